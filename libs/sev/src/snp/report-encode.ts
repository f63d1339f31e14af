import { writeU32, writeU64 } from './bytes.js';
import { SnpInvalidFieldError, SnpTruncatedInputError, SnpUnsupportedReportVersionError } from './errors.js';
import { encodeGuestPolicy } from './policy.js';
import type { SnpAttestationReport, SnpFirmwareVersion, SnpKeyInfo } from './report.js';
import {
  P384_SCALAR_SIZE,
  SNP_KEY_INFO,
  SNP_REPORT_FIELDS as F,
  SNP_REPORT_SIZE,
  SNP_REPORT_VERSION_CPUID,
  SNP_REPORT_VERSION_MIT_VECTORS,
  SNP_REPORT_VERSIONS,
  SNP_SIGNING_KEY,
  type SnpReportFieldName,
} from './report-layout.js';
import { encodeTcbVersion, type TcbVersion } from './tcb.js';

function put(out: Uint8Array, name: SnpReportFieldName, value: Uint8Array): void {
  const [offset, size] = F[name];
  if (value.length !== size) throw new SnpTruncatedInputError(name, size, value.length);
  out.set(value, offset);
}

function putTcb(
  out: Uint8Array,
  name: SnpReportFieldName,
  tcb: TcbVersion,
  report: SnpAttestationReport,
): void {
  if (tcb.layout !== report.tcbLayout) {
    throw new SnpInvalidFieldError(name, tcb.layout, `report uses the ${report.tcbLayout} TCB layout`);
  }
  put(out, name, encodeTcbVersion(tcb));
}

function keyInfoValue(k: SnpKeyInfo): number {
  const code = SNP_SIGNING_KEY[k.signingKey === 'none' ? 'NONE' : k.signingKey];
  return (
    (Number(k.authorKeyEn) << SNP_KEY_INFO.authorKeyEnBit) |
    (Number(k.maskChipKey) << SNP_KEY_INFO.maskChipKeyBit) |
    (code << SNP_KEY_INFO.signingKeyShift)
  );
}

function putVersion(out: Uint8Array, buildOffset: number, v: SnpFirmwareVersion): void {
  out[buildOffset] = v.build;
  out[buildOffset + 1] = v.minor;
  out[buildOffset + 2] = v.major;
}

function putScalar(out: Uint8Array, name: 'SIGNATURE_R' | 'SIGNATURE_S', value: Uint8Array): void {
  // Accept the 48 significant bytes or the full zero-padded 72-byte field, little-endian either way.
  if (value.length === P384_SCALAR_SIZE) out.set(value, F[name][0]);
  else put(out, name, value);
}

/**
 * Encodes a report back to its 1184 bytes; the exact inverse of {@link parseAttestationReport} for every
 * valid report (reserved ranges are written as zero). Version-specific fields must match the version:
 * `cpuid` from v3, the mitigation vectors from v5.
 */
export function encodeAttestationReport(report: SnpAttestationReport): Uint8Array {
  const { version } = report;
  if (!(SNP_REPORT_VERSIONS as readonly number[]).includes(version))
    throw new SnpUnsupportedReportVersionError(version);
  const hasCpuid = version >= SNP_REPORT_VERSION_CPUID;
  const hasMit = version >= SNP_REPORT_VERSION_MIT_VECTORS;
  if (hasCpuid !== (report.cpuid !== undefined)) {
    throw new SnpInvalidFieldError('cpuid', String(report.cpuid !== undefined), `version ${version} report`);
  }
  if (hasMit !== (report.launchMitVector !== undefined && report.currentMitVector !== undefined)) {
    throw new SnpInvalidFieldError('mitigation vectors', 'present/absent', `version ${version} report`);
  }

  const out = new Uint8Array(SNP_REPORT_SIZE);
  writeU32(out, F.VERSION[0], version);
  writeU32(out, F.GUEST_SVN[0], report.guestSvn);
  writeU64(out, F.POLICY[0], encodeGuestPolicy(report.policy));
  put(out, 'FAMILY_ID', report.familyId);
  put(out, 'IMAGE_ID', report.imageId);
  writeU32(out, F.VMPL[0], report.vmpl);
  writeU32(out, F.SIGNATURE_ALGO[0], report.signatureAlgo);
  putTcb(out, 'CURRENT_TCB', report.currentTcb, report);
  writeU64(out, F.PLATFORM_INFO[0], report.platformInfo.raw);
  writeU32(out, F.KEY_INFO[0], keyInfoValue(report.keyInfo));
  put(out, 'REPORT_DATA', report.reportData);
  put(out, 'MEASUREMENT', report.measurement);
  put(out, 'HOST_DATA', report.hostData);
  put(out, 'ID_KEY_DIGEST', report.idKeyDigest);
  put(out, 'AUTHOR_KEY_DIGEST', report.authorKeyDigest);
  put(out, 'REPORT_ID', report.reportId);
  put(out, 'REPORT_ID_MA', report.reportIdMa);
  putTcb(out, 'REPORTED_TCB', report.reportedTcb, report);
  if (report.cpuid) {
    out[F.CPUID_FAM_ID[0]] = report.cpuid.family;
    out[F.CPUID_MOD_ID[0]] = report.cpuid.model;
    out[F.CPUID_STEP[0]] = report.cpuid.stepping;
  }
  put(out, 'CHIP_ID', report.chipId);
  putTcb(out, 'COMMITTED_TCB', report.committedTcb, report);
  putVersion(out, F.CURRENT_BUILD[0], report.currentVersion);
  putVersion(out, F.COMMITTED_BUILD[0], report.committedVersion);
  putTcb(out, 'LAUNCH_TCB', report.launchTcb, report);
  if (report.launchMitVector !== undefined && report.currentMitVector !== undefined) {
    writeU64(out, F.LAUNCH_MIT_VECTOR[0], report.launchMitVector);
    writeU64(out, F.CURRENT_MIT_VECTOR[0], report.currentMitVector);
  }
  putScalar(out, 'SIGNATURE_R', report.signature.r);
  putScalar(out, 'SIGNATURE_S', report.signature.s);
  return out;
}
