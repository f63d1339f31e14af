import { describe, expect, it } from 'vitest';
import { tapName } from './tap-name.js';

describe('a VM NIC’s tap name', () => {
  it('comes from the VM id, the same on every host, within 15 bytes and without the id’s characters', () => {
    const t = tapName('cvm-1,weird;name', 0);
    expect(t).toMatch(/^ccm[0-9a-f]{10}0$/);
    expect(Buffer.byteLength(t)).toBeLessThanOrEqual(15);
    expect(tapName('cvm-1,weird;name', 0)).toBe(t);
    expect(tapName('cvm-1,weird;name', 1)).not.toBe(t);
    expect(tapName('cvm-2', 0)).not.toBe(t);
  });
});
