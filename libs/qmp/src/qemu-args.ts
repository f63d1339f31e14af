import type { Accelerator } from './accel.js';
import { QemuConfigError } from './errors.js';

export const DEFAULT_MEMORY_MIB = 512;
export const DEFAULT_CPUS = 1;

/** What a launched QEMU runs. Both ends of a migration must be started with the same guest settings. */
export interface QemuGuestSpec {
  /** Kernel image for `-kernel` (an uncompressed PVH vmlinux boots fastest under TCG). */
  kernel: string;
  initrd?: string;
  /** Kernel command line. */
  append?: string;
  memoryMiB?: number;
  cpus?: number;
  /** `-cpu` model; default `host` under KVM and QEMU's default under TCG. */
  cpu?: string;
  /** `-machine` value; QEMU's default (pc) when omitted. */
  machine?: string;
  /** Arguments appended verbatim (devices, SEV objects, …). */
  extraArgs?: readonly string[];
}

export interface QemuRuntimePaths {
  qmpSocket: string;
  pidfile: string;
  /** Serial console output file; `undefined` sends the serial port nowhere. */
  serialLog: string | undefined;
}

/** QEMU option values use `,` as separator; a literal comma is written twice. */
export const escapeOptionValue = (v: string): string => v.replace(/,/g, ',,');

/**
 * Builds QEMU's argv (without the binary). Pure, so the command line is unit-tested; `incoming` makes a
 * destination that waits for a migration stream (`tcp:HOST:PORT`, or `defer` for migrate-incoming).
 */
export function buildQemuArgs(
  spec: QemuGuestSpec,
  accel: Accelerator,
  paths: QemuRuntimePaths,
  opts: { name?: string; incoming?: string } = {},
): string[] {
  const memoryMiB = spec.memoryMiB ?? DEFAULT_MEMORY_MIB;
  const cpus = spec.cpus ?? DEFAULT_CPUS;
  if (!Number.isInteger(memoryMiB) || memoryMiB < 16) {
    throw new QemuConfigError(`memoryMiB must be an integer >= 16, got ${memoryMiB}`);
  }
  if (!Number.isInteger(cpus) || cpus < 1)
    throw new QemuConfigError(`cpus must be an integer >= 1, got ${cpus}`);
  if (!spec.kernel) throw new QemuConfigError('kernel is required');

  const args: string[] = [];
  if (opts.name) args.push('-name', escapeOptionValue(opts.name));
  args.push('-nodefaults', '-no-user-config', '-display', 'none');
  if (spec.machine) args.push('-machine', spec.machine);
  args.push('-accel', accel);
  const cpu = spec.cpu ?? (accel === 'kvm' ? 'host' : undefined);
  if (cpu) args.push('-cpu', cpu);
  args.push('-m', String(memoryMiB), '-smp', String(cpus));
  args.push('-kernel', spec.kernel);
  if (spec.initrd) args.push('-initrd', spec.initrd);
  if (spec.append) args.push('-append', spec.append);
  args.push('-serial', paths.serialLog ? `file:${escapeOptionValue(paths.serialLog)}` : 'none');
  args.push('-qmp', `unix:${escapeOptionValue(paths.qmpSocket)},server=on,wait=off`);
  args.push('-pidfile', paths.pidfile);
  if (opts.incoming) args.push('-incoming', opts.incoming);
  args.push(...(spec.extraArgs ?? []));
  return args;
}
