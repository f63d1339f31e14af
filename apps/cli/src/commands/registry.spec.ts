import { describe, expect, it } from 'vitest';
import { checkVmLaunch, vmLaunchedText } from './registry.js';
import { CliError } from '../errors.js';

describe('ccm vm launch', () => {
  it('builds the launch-vm request from the flags', () => {
    expect(
      checkVmLaunch(['launch'], { host: 'h', workload: ['a', 'b'], vm: 'cvm-1', overlay: 'ov' }),
    ).toEqual({ host: 'h', workloads: ['a', 'b'], vmId: 'cvm-1', overlayId: 'ov' });
    expect(checkVmLaunch(['launch'], { host: 'h', workload: ['a'] })).toEqual({
      host: 'h',
      workloads: ['a'],
    });
    expect(() => checkVmLaunch(['launch'], { host: 'h', workload: ['a'], vm: 'a b' })).toThrow(CliError);
  });

  it('prints the VM, its attested launch and its overlay address', () => {
    const r = { vmId: 'cvm-1', hostId: 'host-a', launchSessionId: 'ls-1', launchDigest: 'ab'.repeat(32) };
    expect(vmLaunchedText(r)).toBe(
      'cvm-1 runs on host-a (attested launch ls-1, launch digest abababababababab…)\n',
    );
    expect(vmLaunchedText({ ...r, overlay: { overlayId: 'ov', nodeIp: '10.77.0.2', decision: 7 } })).toBe(
      'cvm-1 runs on host-a (attested launch ls-1, launch digest abababababababab…)\n' +
        'admitted to ov as 10.77.0.2 (release log #7)\n',
    );
  });
});
