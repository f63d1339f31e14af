import { describe, expect, it } from 'vitest';
import { SimOverlayDriver } from './sim-driver.js';

const CIDR = '10.9.0.0/24';
const a = { publicKey: 'key-a', nodeIp: '10.9.0.1', overlayCidr: CIDR };
const b = { publicKey: 'key-b', nodeIp: '10.9.0.2', overlayCidr: CIDR };

describe('SimOverlayDriver.restoreNode (a restarted or second overlay replica rebuilds its nodes)', () => {
  it('a driver that never saw the joins routes as the rows say once each node is restored', async () => {
    const fresh = new SimOverlayDriver();
    expect(() => fresh.setPeers('vm-a', [])).toThrow(/vm-a has not joined/);
    await fresh.restoreNode(
      'vm-a',
      a,
      [{ publicKey: 'key-b', allowedIps: ['10.9.0.2/32', '10.9.0.50/32'] }],
      [],
    );
    await fresh.restoreNode('vm-b', b, [{ publicKey: 'key-a', allowedIps: ['10.9.0.1/32'] }], ['10.9.0.50']);
    expect(fresh.route('vm-a', '10.9.0.50')).toBe('vm-b');
    await fresh.setPeers('vm-a', []); // a change after the restore finds the node
  });

  it('restoring replaces what the node had: a peer the rows no longer hold is gone, addresses are the rows', async () => {
    const d = new SimOverlayDriver();
    await d.joinNode('vm-a', a);
    await d.setPeers('vm-a', [{ publicKey: 'key-stale', allowedIps: ['10.9.0.9/32'] }]);
    await d.addAddress('vm-a', '10.9.0.60');
    await d.restoreNode('vm-a', a, [{ publicKey: 'key-b', allowedIps: ['10.9.0.2/32'] }], []);
    expect(d.peersOf('vm-a')).toEqual(new Map([['key-b', ['10.9.0.2/32']]]));
    expect(d.route('vm-a', '10.9.0.60')).toBeUndefined();
    expect(d.route('vm-a', '10.9.0.1')).toBe('vm-a');
  });
});
