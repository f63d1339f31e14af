import { describe, expect, it } from 'vitest';
import { detectAccelerator, type HostProbe } from './accel.js';
import { QemuConfigError } from './errors.js';

const VMX = 'processor\t: 0\nflags\t\t: fpu vme de pse vmx sse\n';
const NO_VIRT = 'processor\t: 0\nflags\t\t: fpu vme de pse sse\n';

function probe(p: { env?: string; kvm?: boolean; pvm?: boolean; cpuinfo?: string }): HostProbe {
  return {
    env: { CCM_QEMU_ACCEL: p.env },
    kvmDeviceUsable: () => p.kvm ?? true,
    exists: (path) => path === '/sys/module/kvm_pvm' && (p.pvm ?? false),
    cpuinfo: () => p.cpuinfo ?? VMX,
  };
}

describe('detectAccelerator', () => {
  it.each([
    ['KVM with VT-x', {}, 'kvm', /hardware virtualisation/],
    ['no /dev/kvm', { kvm: false }, 'tcg', /\/dev\/kvm/],
    ['kvm_pvm (nested, this machine and CI)', { pvm: true }, 'tcg', /kvm_pvm/],
    ['/dev/kvm but no vmx/svm flag', { cpuinfo: NO_VIRT }, 'tcg', /vmx\/svm/],
    ['env forcing tcg on a KVM host', { env: 'tcg' }, 'tcg', /forced/],
    ['env forcing kvm on a kvm_pvm host', { env: 'kvm', pvm: true }, 'kvm', /forced/],
  ])('%s → %s', (_what, p, accel, reason) => {
    const choice = detectAccelerator(probe(p));
    expect(choice.accel).toBe(accel);
    expect(choice.reason).toMatch(reason);
  });

  it('rejects an unknown forced accelerator', () => {
    expect(() => detectAccelerator(probe({ env: 'hvf' }))).toThrow(QemuConfigError);
  });
});
