import { describe, expect, it } from 'vitest';
import { type VmRecord } from '../store/records.js';
import { interruptedLaunch } from './vm.service.js';

const base: VmRecord = {
  vmId: 'cvm-1',
  driver: 'sim',
  origin: 'local',
  phase: 'Paused',
  spec: { memoryMiB: 512, cpus: 1 },
  runDir: '/run/ccm/vms/cvm-1',
  createdAt: new Date(0),
  phaseChangedAt: new Date(0),
};

describe('interruptedLaunch: an attested launch whose agent died before it kept the measurement', () => {
  it('is a local SEV launch with no measurement and no secret injected', () => {
    expect(interruptedLaunch({ ...base, sev: { policy: 1, secretInjected: false } })).toBe(true);
  });
  it('is not a measured launch, one with its secret in, an incoming VM or a plain VM', () => {
    expect(
      interruptedLaunch({ ...base, sev: { policy: 1, secretInjected: false, measurement: 'bQ==' } }),
    ).toBe(false);
    expect(interruptedLaunch({ ...base, sev: { policy: 1, secretInjected: true } })).toBe(false);
    expect(
      interruptedLaunch({ ...base, origin: 'incoming', sev: { policy: 1, secretInjected: false } }),
    ).toBe(false);
    expect(interruptedLaunch(base)).toBe(false);
  });
});
