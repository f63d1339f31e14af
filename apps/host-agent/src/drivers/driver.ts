import { type HypervisorBinary, type HypervisorDriver as DriverKind, type VmSpec } from '@ccm/contracts';
import { type VmPaths, type VmProcess } from './vm-process.js';

/** SEV launch inputs handed to a VM whose firmware does the launch (the sim, or QEMU on SEV hardware). */
export interface FirmwareSevLaunch {
  policy: number;
  /** GODH certificate and session blob, base64 (absent for a migration destination). */
  godh?: string;
  session?: string;
}

/** What a driver needs to start one VM process. */
export interface StartVmOptions {
  vmId: string;
  paths: VmPaths;
  spec: VmSpec;
  /** Start with the vCPUs stopped (QEMU `-S`). */
  paused: boolean;
  /** A migration destination: waits for `migrate-incoming` (QEMU `-incoming defer`). */
  incoming: boolean;
  /** Set when the VM's own firmware runs the SEV launch (see {@link HypervisorDriver.firmwareSev}). */
  sev?: FirmwareSevLaunch;
  /**
   * Back the guest's RAM by {@link VmPaths.guestRam} (an SEV launch the agent runs on the software
   * secure processor: the agent writes the secret page there before resume). The qemu driver only.
   */
  ramFile?: boolean;
  startTimeoutMs: number;
  commandTimeoutMs: number;
}

/**
 * One way of running VMs. Both drivers give a process per VM with a QMP socket in its runtime dir, so
 * everything above the driver (launch, measurement, migration, adoption) is the same code.
 */
export interface HypervisorDriver {
  readonly kind: DriverKind;
  /** The accelerator VMs get, and why. */
  readonly accelerator: { accelerator: 'kvm' | 'tcg' | 'sim'; reason: string };
  /** The hypervisor program and its version (the qemu driver; the sim has none). */
  readonly binary?: HypervisorBinary;
  /**
   * Whether SEV launch and transport steps go to the VM's firmware over QMP (query-sev-launch-measure,
   * sev-inject-launch-secret, migrate-set-parameters sev-*). Otherwise the agent runs them on the
   * software secure processor itself (QEMU on a host without SEV firmware).
   */
  readonly firmwareSev: boolean;
  start(opts: StartVmOptions): Promise<VmProcess>;
  /** Frees what {@link start} made outside the runtime dir (taps), once the VM's process has ended. */
  release?(vmId: string, spec: VmSpec): Promise<void>;
}
