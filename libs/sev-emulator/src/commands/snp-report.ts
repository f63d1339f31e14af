import {
  encodeAttestationReport,
  SNP_SIGNATURE_ALGO_ECDSA_P384_SHA384,
  signAttestationReport,
  type SnpAttestationReport,
  type SnpCpuid,
  type SnpGeneration,
} from '@ccm/sev';
import type { Firmware } from '../firmware.js';
import type { GuestContext, SnpGuestContext } from '../guest/context.js';

/** Report version the emulated firmware produces (v3: with CPUID family/model/stepping). */
export const EMULATED_REPORT_VERSION = 3;

/** CPUID identity of each emulated product line (combined family, model, stepping). */
export const EMULATED_CPUID: Readonly<Record<SnpGeneration, SnpCpuid>> = {
  milan: { family: 0x19, model: 0x01, stepping: 1 },
  genoa: { family: 0x19, model: 0x11, stepping: 1 },
  turin: { family: 0x1a, model: 0x02, stepping: 0 },
};

/** PLATFORM_INFO of the emulated host: SMT enabled (bit 0), TSME enabled (bit 1). */
const PLATFORM_INFO = 0b11n;

/**
 * The attestation report for a running SNP guest, signed with the platform's VCEK: MEASUREMENT is the
 * launch digest, REPORT_DATA and VMPL come from the guest's request, HOST_DATA from SNP_LAUNCH_FINISH,
 * CHIP_ID and every TCB field from the platform (REPORTED_TCB is the TCB the VCEK was derived for).
 */
export function buildAttestationReport(
  fw: Firmware,
  ctx: GuestContext & { snp: SnpGuestContext },
  reportData: Uint8Array,
  vmpl: number,
): Buffer {
  const { config } = fw;
  const tcb = config.tcb;
  const version = { major: config.apiMajor, minor: config.apiMinor, build: config.build };
  const report: SnpAttestationReport = {
    version: EMULATED_REPORT_VERSION,
    guestSvn: 0,
    policy: ctx.snp.policy,
    familyId: new Uint8Array(16),
    imageId: new Uint8Array(16),
    vmpl,
    signatureAlgo: SNP_SIGNATURE_ALGO_ECDSA_P384_SHA384,
    currentTcb: tcb,
    platformInfo: {
      raw: PLATFORM_INFO,
      smtEnabled: true,
      tsmeEnabled: true,
      eccEnabled: false,
      raplDisabled: false,
      ciphertextHidingEnabled: false,
      aliasCheckComplete: false,
      tioEnabled: false,
    },
    keyInfo: { authorKeyEn: false, maskChipKey: false, signingKey: 'VCEK' },
    reportData: Uint8Array.from(reportData),
    measurement: ctx.snp.digest.digest(),
    hostData: Uint8Array.from(ctx.snp.hostData),
    idKeyDigest: new Uint8Array(48),
    authorKeyDigest: new Uint8Array(48),
    reportId: Uint8Array.from(ctx.snp.reportId),
    reportIdMa: new Uint8Array(32).fill(0xff),
    reportedTcb: tcb,
    cpuid: EMULATED_CPUID[config.generation],
    chipId: Uint8Array.from(fw.store.chipId),
    committedTcb: tcb,
    currentVersion: version,
    committedVersion: version,
    launchTcb: ctx.snp.launchTcb,
    signature: { r: new Uint8Array(72), s: new Uint8Array(72) },
    tcbLayout: tcb.layout,
    generation: config.generation,
  };
  return Buffer.from(signAttestationReport(encodeAttestationReport(report), fw.store.vcek.key));
}
