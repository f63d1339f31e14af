import { createHash } from 'node:crypto';
import { guestEvidenceReportData, type SnpEvidence } from '@ccm/contracts';
import { kdsVcekUrl, parseAttestationReport, SNP_PAGE_SIZE, SnpLaunchDigest } from '@ccm/sev';
import type { SoftwareSecureProcessor } from '../processor.js';
import type { SevGuest } from './sev-guest.js';

/** The default SNP guest policy of a simulated guest: SMT allowed, reserved bit 17, no DEBUG. */
export const SIM_SNP_POLICY = 0x30000n;

/** Where the simulated guest's boot image is loaded (one page). */
const IMAGE_GPA = 0;

/**
 * The one-page boot image and VMSA of a simulated SNP guest named `image` (a label the owner knows:
 * the same label always gives the same pages, so the launch digest is a reference value the owner
 * can compute without running the guest).
 */
function simPages(image: string): { page: Buffer; vmsa: Buffer } {
  const fill = (what: string) => {
    const out = Buffer.alloc(SNP_PAGE_SIZE);
    for (let i = 0, block = 0; i < out.length; block++) {
      i += createHash('sha256')
        .update(`ccm-sim-snp-guest-v1\0${what}\0${image}\0${block}`)
        .digest()
        .copy(out, i);
    }
    return out;
  };
  return { page: fill('boot'), vmsa: fill('vmsa') };
}

/** The SNP launch digest (MEASUREMENT) of a simulated guest booted from `image`. */
export function simSnpMeasurement(image: string): Buffer {
  const { page, vmsa } = simPages(image);
  return Buffer.from(new SnpLaunchDigest().updateNormal(BigInt(IMAGE_GPA), page).updateVmsa(vmsa).digest());
}

/**
 * Launches a running SNP guest on a software secure processor as a hypervisor would (SNP_LAUNCH_START,
 * UPDATE of its boot page and VMSA, FINISH); its MEASUREMENT is {@link simSnpMeasurement}`(image)`. The
 * processor must be SNP-initialised (`snpInit`, `init`).
 */
export function launchSimSnpGuest(
  sp: SoftwareSecureProcessor,
  options: { readonly image: string; readonly policy?: bigint },
): SevGuest {
  const { page, vmsa } = simPages(options.image);
  const guest = sp.snpLaunchStart({ policy: options.policy ?? SIM_SNP_POLICY, memoryBytes: 1 << 20 });
  sp.activate(guest);
  guest.host.write(IMAGE_GPA, page);
  sp.snpLaunchUpdate(guest, IMAGE_GPA, page.length, 'NORMAL');
  sp.snpLaunchUpdateVmsa(guest, vmsa);
  sp.snpLaunchFinish(guest);
  return guest;
}

/**
 * A guest's evidence for the key-broker (libs/contracts `SnpEvidence`): an attestation report asked
 * for from inside `guest`, whose REPORT_DATA binds `publicKey` (the guest's own identity key) to the
 * broker's nonce and the migration, with the platform's VCEK chain and the KDS URL of its VCEK.
 */
export function simGuestEvidence(
  sp: SoftwareSecureProcessor,
  guest: SevGuest,
  vmId: string,
  publicKey: Buffer,
  ask: { readonly nonce: string; readonly migrationId: string },
): SnpEvidence {
  const reportData = guestEvidenceReportData(publicKey, Buffer.from(ask.nonce, 'hex'), ask.migrationId);
  const report = guest.inGuest().attestationReport(reportData);
  const chain = sp.snpCertChain();
  const parsed = parseAttestationReport(report, { generation: sp.config.generation });
  return {
    vmId,
    nonce: ask.nonce,
    migrationId: ask.migrationId,
    platform: 'sev-snp',
    report: report.toString('base64'),
    publicKey: publicKey.toString('base64'),
    vcekChain: {
      ark: chain.ark.raw.toString('base64'),
      ask: chain.ask.raw.toString('base64'),
      vcek: chain.vek.raw.toString('base64'),
    },
    vcekUrl: kdsVcekUrl(sp.config.generation, parsed.chipId, parsed.reportedTcb),
  };
}
