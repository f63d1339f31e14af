import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { QemuConfigError } from './errors.js';

export type Accelerator = 'kvm' | 'tcg';

/** Environment variable that forces the accelerator (`kvm` or `tcg`), overriding detection. */
export const ACCEL_ENV = 'CCM_QEMU_ACCEL';

export interface AcceleratorChoice {
  accel: Accelerator;
  /** Why this accelerator was chosen, for logs and skip messages. */
  reason: string;
}

/** The host facts detection looks at; injectable so the decision table is unit-tested. */
export interface HostProbe {
  env: Record<string, string | undefined>;
  /** Whether /dev/kvm can be opened read-write. */
  kvmDeviceUsable(): boolean;
  exists(path: string): boolean;
  cpuinfo(): string;
}

export const realHostProbe: HostProbe = {
  env: process.env,
  kvmDeviceUsable: () => {
    try {
      accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
      return true;
    } catch {
      return false;
    }
  },
  exists: (p) => existsSync(p),
  cpuinfo: () => {
    try {
      return readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return '';
    }
  },
};

/**
 * Picks KVM only where it works. `kvm_pvm` (the pagetable-based nested KVM of Firecracker-style hosts)
 * exposes /dev/kvm, but QEMU aborts on MSR 0x10a with `-cpu host`, and with other CPU models guests run
 * hundreds of times slower than TCG (FEASIBILITY §1.2), so it is treated as no KVM at all.
 */
export function detectAccelerator(probe: HostProbe = realHostProbe): AcceleratorChoice {
  const forced = probe.env[ACCEL_ENV]?.trim();
  if (forced) {
    if (forced !== 'kvm' && forced !== 'tcg') {
      throw new QemuConfigError(`${ACCEL_ENV} must be 'kvm' or 'tcg', got '${forced}'`);
    }
    return { accel: forced, reason: `forced by ${ACCEL_ENV}` };
  }
  if (!probe.kvmDeviceUsable()) return { accel: 'tcg', reason: '/dev/kvm is missing or not accessible' };
  if (probe.exists('/sys/module/kvm_pvm')) {
    return { accel: 'tcg', reason: 'KVM is kvm_pvm (nested, unusable for QEMU guests here)' };
  }
  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(probe.cpuinfo())) {
    return { accel: 'tcg', reason: 'the CPU has no vmx/svm flag' };
  }
  return { accel: 'kvm', reason: '/dev/kvm usable with hardware virtualisation' };
}
