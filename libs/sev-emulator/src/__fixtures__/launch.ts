import {
  buildSevKernelHashesTable,
  computeSevLaunchDigest,
  decodeSevCertificate,
  findOvmfSevInfo,
  type SevKernelHashesInput,
  type SevLaunchStarted,
  sevEsVmsaPages,
  startSevLaunch,
} from '@ccm/sev';
import type { SevLaunchMeasurement } from '../commands/launch.js';
import type { SevGuest } from '../guest/sev-guest.js';
import type { SoftwareSecureProcessor } from '../processor.js';
import { SEVCTL } from './vectors.js';

/** OVMF is mapped to end at 4 GiB, as QEMU maps the flash. */
export const OVMF_END = 0x1_0000_0000;
/** Guest RAM of the launched test guests: 4 GiB (sparse: only touched pages use memory). */
export const GUEST_BYTES = 0x1_0000_0000;

export interface LaunchedGuest {
  readonly guest: SevGuest;
  /** The guest owner's side (libs/sev), holding TEK/TIK. */
  readonly owner: SevLaunchStarted;
  readonly measurement: SevLaunchMeasurement;
  /** GCTX.LD the guest owner expects (computed by libs/sev from the same inputs). */
  readonly expectedDigest: Buffer;
  /** OVMF's secret area (LAUNCH_SECRET target). */
  readonly secretGpa: number;
}

/**
 * Launches a guest the way QEMU does with the real (trimmed) sevctl OVMF: the owner builds the session
 * with libs/sev for the platform's PDH; the host loads OVMF below 4 GiB, optionally the kernel-hashes
 * table, optionally SEV-ES VMSAs, and takes LAUNCH_MEASURE.
 */
export function launchOvmfGuest(
  sp: SoftwareSecureProcessor,
  options: { readonly policy: number; readonly vcpus?: number; readonly kernel?: boolean },
): LaunchedGuest {
  const pdh = decodeSevCertificate(sp.pdhCertExport().pdh);
  const owner = startSevLaunch({ pdh, policy: options.policy });
  const { dhCertBase64, sessionBase64 } = owner.qemuInputs();
  const guest = sp.launchStart({
    policy: options.policy,
    godh: Buffer.from(dhCertBase64, 'base64'),
    session: Buffer.from(sessionBase64, 'base64'),
    memoryBytes: GUEST_BYTES,
  });
  sp.activate(guest);
  const firmware = SEVCTL.ovmf();
  const base = OVMF_END - firmware.length;
  guest.host.write(base, firmware);
  sp.launchUpdateData(guest, base, firmware.length);
  const info = findOvmfSevInfo(firmware);
  const kernel: SevKernelHashesInput | undefined = options.kernel
    ? { kernel: SEVCTL.kernel(), initrd: SEVCTL.initrd(), cmdline: SEVCTL.cmdline }
    : undefined;
  if (kernel) {
    const table = buildSevKernelHashesTable(kernel);
    const at = info.hashesTable?.base as number;
    guest.host.write(at, table);
    sp.launchUpdateData(guest, at, table.length);
  }
  const vmsas = options.vcpus ? sevEsVmsaPages(SEVCTL.vmsa0(), SEVCTL.vmsa1(), options.vcpus) : [];
  for (const vmsa of vmsas) sp.launchUpdateVmsa(guest, vmsa);
  const measurement = sp.launchMeasure(guest);
  const expectedDigest = computeSevLaunchDigest({ firmware, kernel, vmsas });
  return { guest, owner, measurement, expectedDigest, secretGpa: info.secretArea?.base as number };
}
