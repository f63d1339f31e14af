/**
 * SEV-SNP: attestation reports, TCB and policy values. Pure (node:crypto only).
 */
export * from './errors.js';
export {
  type SnpGeneration,
  SNP_GENERATIONS,
  type TcbLayout,
  tcbLayoutOf,
  generationFromCpuid,
  generationFromProductName,
} from './generation.js';
export {
  type TcbVersion,
  type TcbComponent,
  TCB_VERSION_SIZE,
  TCB_COMPONENTS,
  decodeTcbVersion,
  encodeTcbVersion,
  tcbAtLeast,
  tcbShortfall,
  tcbDifferences,
  formatTcb,
} from './tcb.js';
export {
  type SnpGuestPolicy,
  type SnpPolicyRequirements,
  SNP_POLICY_BITS,
  decodeGuestPolicy,
  encodeGuestPolicy,
  policyViolations,
} from './policy.js';
export type {
  SnpAttestationReport,
  SnpCpuid,
  SnpFirmwareVersion,
  SnpKeyInfo,
  SnpPlatformInfo,
  SnpReportSignature,
  SnpSigningKey,
} from './report.js';
export {
  SNP_REPORT_SIZE,
  SNP_REPORT_SIGNED_SIZE,
  SNP_REPORT_FIELDS,
  SNP_REPORT_VERSIONS,
  SNP_SIGNATURE_ALGO_ECDSA_P384_SHA384,
  type SnpReportFieldName,
} from './report-layout.js';
export { type ParseReportOptions, parseAttestationReport, reportSignedBytes } from './report-decode.js';
export { encodeAttestationReport } from './report-encode.js';
