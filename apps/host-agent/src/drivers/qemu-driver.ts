import { CcmError, ErrorCodes, type HypervisorBinary, type VmSpec } from '@ccm/contracts';
import {
  detectAccelerator,
  escapeOptionValue,
  qemuVersion,
  startQemu,
  type AcceleratorChoice,
} from '@ccm/qmp';
import { createTaps, deviceArgs, removeTaps } from './devices.js';
import { type HypervisorDriver, type StartVmOptions, type FirmwareSevLaunch } from './driver.js';
import { fromQemuProcess, type VmPaths, type VmProcess } from './vm-process.js';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const MIB = 1024 * 1024;
/** The pc/q35 machines' main RAM id (`query-machines` default-ram-id). */
const DEFAULT_RAM_ID = 'pc.ram';

export interface QemuDriverOptions {
  binary: string;
  accel: 'auto' | 'kvm' | 'tcg';
  /** Firmware passed with `-bios` when the agent measures the launch itself (emulated SEV). */
  firmware: string;
  /** SEV comes from the host's firmware (hardware) rather than the software secure processor. */
  hardwareSev: boolean;
  /** C-bit position and reduced physical bits, as query-sev-capabilities reports them (hardware SEV). */
  cbitpos?: number;
  reducedPhysBits?: number;
}

/**
 * QEMU's `sev-guest` object for a launch on SEV hardware: GODH and session go through files (QEMU reads
 * `dh-cert-file`/`session-file` as base64), and `kernel-hashes=on` makes OVMF measure -kernel/-initrd/-append.
 */
export async function qemuSevArgs(
  paths: VmPaths,
  sev: FirmwareSevLaunch,
  hw: { cbitpos: number; reducedPhysBits: number },
): Promise<string[]> {
  const props = [
    'sev-guest',
    'id=sev0',
    `policy=0x${sev.policy.toString(16)}`,
    `cbitpos=${hw.cbitpos}`,
    `reduced-phys-bits=${hw.reducedPhysBits}`,
    'kernel-hashes=on',
  ];
  if (sev.godh && sev.session) {
    const dh = join(paths.runDir, 'godh.b64');
    const session = join(paths.runDir, 'session.b64');
    await writeFile(dh, sev.godh);
    await writeFile(session, sev.session);
    props.push(`dh-cert-file=${dh}`, `session-file=${session}`);
  }
  return ['-object', props.join(','), '-machine', 'memory-encryption=sev0'];
}

/**
 * Guest RAM backed by a file in the VM's runtime dir (made here 0600 and sized, so QEMU opens it rather
 * than creating it with its own mode), shared so what the agent writes into the file is what the guest
 * reads. Below 4 GiB the pc machine's RAM is linear in its backend: guest-physical address = file
 * offset. The backend takes the machine's default RAM id (`pc.ram`), so the VM's RAM keeps its name in
 * a migration stream and a destination with ordinary RAM accepts it.
 */
export async function guestRamArgs(paths: VmPaths, memoryMiB: number): Promise<string[]> {
  const file = await open(paths.guestRam, 'w', 0o600);
  try {
    await file.truncate(memoryMiB * MIB);
  } finally {
    await file.close();
  }
  return [
    '-object',
    `memory-backend-file,id=${DEFAULT_RAM_ID},mem-path=${escapeOptionValue(paths.guestRam)},share=on,size=${memoryMiB}M`,
    '-machine',
    `memory-backend=${DEFAULT_RAM_ID}`,
  ];
}

/** Real VMs: qemu-system-x86_64 with KVM where it works and TCG otherwise, driven over QMP. */
export class QemuDriver implements HypervisorDriver {
  readonly kind = 'qemu' as const;
  readonly accelerator: { accelerator: 'kvm' | 'tcg'; reason: string };
  readonly binary: HypervisorBinary;
  private readonly accel: AcceleratorChoice;

  constructor(private readonly opts: QemuDriverOptions) {
    this.accel =
      opts.accel === 'auto' ? detectAccelerator() : { accel: opts.accel, reason: 'set by CCM_QEMU_ACCEL' };
    this.accelerator = { accelerator: this.accel.accel, reason: this.accel.reason };
    // Once at start: which QEMU this host runs is reported with its capabilities and heartbeats.
    const v = qemuVersion(opts.binary);
    this.binary = { binary: opts.binary, ...(v ? { version: v.version, banner: v.banner } : {}) };
  }

  get firmwareSev(): boolean {
    return this.opts.hardwareSev;
  }

  async start(o: StartVmOptions): Promise<VmProcess> {
    if (!o.spec.kernel) {
      throw new CcmError(
        ErrorCodes.ValidationFailed,
        'the qemu driver needs spec.kernel (a file on this host)',
        {
          retryable: false,
          effect: 'none',
        },
      );
    }
    const extraArgs: string[] = deviceArgs(o.vmId, o.spec);
    if (o.paused) extraArgs.push('-S');
    if (o.sev && this.opts.hardwareSev) {
      extraArgs.push(
        ...(await qemuSevArgs(o.paths, o.sev, {
          cbitpos: this.opts.cbitpos ?? 51,
          reducedPhysBits: this.opts.reducedPhysBits ?? 1,
        })),
        '-bios',
        this.opts.firmware,
      );
    } else if (o.sev) {
      // Emulated SEV: the agent measures this exact firmware, so name it rather than rely on the default.
      extraArgs.push('-bios', this.opts.firmware);
    }
    if (o.ramFile) extraArgs.push(...(await guestRamArgs(o.paths, o.spec.memoryMiB)));
    createTaps(o.vmId, o.spec);
    const q = await startQemu({
      name: o.vmId,
      binary: this.opts.binary,
      accel: this.accel.accel,
      ...(o.spec.cpu && o.spec.cpu !== 'default' ? { cpu: o.spec.cpu } : {}),
      kernel: o.spec.kernel,
      initrd: o.spec.initrd,
      append: o.spec.cmdline,
      memoryMiB: o.spec.memoryMiB,
      cpus: o.spec.cpus,
      runDir: o.paths.runDir,
      qmpSocket: o.paths.qmpSocket,
      pidfile: o.paths.pidfile,
      serialLog: o.paths.serialLog,
      incoming: o.incoming ? 'defer' : undefined,
      extraArgs,
      startTimeoutMs: o.startTimeoutMs,
      commandTimeoutMs: o.commandTimeoutMs,
    }).catch((err: unknown) => {
      removeTaps(o.vmId, o.spec);
      throw err;
    });
    return fromQemuProcess(q, o.paths);
  }

  /** The VM's process ended: its taps go (QEMU does not remove taps it did not make). */
  release(vmId: string, spec: VmSpec): Promise<void> {
    removeTaps(vmId, spec);
    return Promise.resolve();
  }
}
