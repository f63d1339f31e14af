import { readFile } from 'node:fs/promises';
import { type PlatformReply } from '@ccm/contracts';
import { defaultSeabios } from '@ccm/qmp';
import {
  buildSevKernelHashesTable,
  decodeQemuSevMigrationParameters,
  SevLaunchDigest,
  type SevCertificateChain,
} from '@ccm/sev';

/**
 * What a guest owner computes on its side of an attested launch, for tests: the host's chain decoded
 * from the `platform` reply, and the launch digest a measured direct boot must produce.
 */

export function chainFromPlatform(p: PlatformReply): SevCertificateChain {
  const c = p.sev!.chain;
  return decodeQemuSevMigrationParameters({
    'sev-pdh': c.pdh,
    'sev-plat-cert': c.platCert,
    'sev-amd-cert': c.amdCert,
  });
}

/**
 * GCTX.LD of a launch with the host-agent's default firmware (`CCM_VM_FIRMWARE` unset: the SeaBIOS the
 * default QEMU maps), padded to 16 bytes, then the SEV hashes table of kernel, initrd, cmdline.
 */
export async function expectedLaunchDigest(spec: {
  kernel?: string;
  initrd?: string;
  cmdline?: string;
}): Promise<Buffer> {
  const firmware = await readFile(defaultSeabios());
  return new SevLaunchDigest()
    .updateData(Buffer.concat([firmware, Buffer.alloc((16 - (firmware.length % 16)) % 16)]))
    .updateData(
      buildSevKernelHashesTable({
        kernel: spec.kernel ? await readFile(spec.kernel) : Buffer.alloc(0),
        initrd: spec.initrd ? await readFile(spec.initrd) : undefined,
        cmdline: spec.cmdline ?? '',
      }),
    )
    .digest();
}
