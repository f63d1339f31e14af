import { buildSevKernelHashesTable } from './hashes-table.js';
import { SevLaunchDigest } from './measurement.js';

/**
 * GCTX.LD of a measured direct boot, as a guest owner predicts it: the firmware image padded to 16
 * bytes, then the SEV hashes table of kernel, initrd and command line (what OVMF's measured direct
 * boot, the simulated hypervisor and the software secure processor all measure).
 */
export function directBootLaunchDigest(
  firmware: Uint8Array,
  boot: { kernel: Uint8Array; initrd?: Uint8Array; cmdline?: string },
): Buffer {
  return new SevLaunchDigest()
    .updateData(Buffer.concat([firmware, Buffer.alloc((16 - (firmware.length % 16)) % 16)]))
    .updateData(
      buildSevKernelHashesTable({ kernel: boot.kernel, initrd: boot.initrd, cmdline: boot.cmdline ?? '' }),
    )
    .digest();
}
