/**
 * SEV-SNP: attestation reports, TCB and policy values, VCEK/VLEK certificate chains, evidence
 * verification and the launch digest. Pure (node:crypto only).
 */
export * from './errors.js';
export {
  type SnpGeneration,
  SNP_GENERATIONS,
  snpProductName,
  snpGenerationOf,
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
export {
  verifyReportSignature,
  isReportSignatureValid,
  signAttestationReport,
  reportSignatureP1363,
  reportSignatureDer,
} from './signature.js';
export { type SnpCertificateInput, parsePemBundle } from './x509.js';
export { AMD_VEK_OID, type SnpVekInfo, type SnpVekKind, readVekInfo } from './vek.js';
export { AMD_SNP_CA_SHA256, AMD_TRUSTED_ARKS, type SnpTrustedArks } from './amd-roots.js';
export {
  type SnpCertChain,
  type SnpChainOptions,
  type SnpChainVerdict,
  type SnpChainSuccess,
  type SnpChainFailureVerdict,
  verifySnpCertChain,
  assertSnpCertChain,
} from './chain.js';
export { assembleSnpCertChain, snpCertChainFromTable } from './chain-input.js';
export { vekBindingErrors, assertVekBinding } from './binding.js';
export {
  type SnpEvidenceOptions,
  type SnpEvidenceVerdict,
  type SnpCheck,
  type SnpEvidenceCheckName,
  SNP_EVIDENCE_CHECKS,
  verifySnpEvidence,
} from './evidence.js';
export {
  SNP_PAGE_TYPE,
  type SnpPageType,
  type SnpPageInfo,
  type SnpPageOptions,
  SNP_PAGE_SIZE,
  SNP_VMSA_GPA,
  encodePageInfo,
  SnpLaunchDigest,
  snpFirmwareDigest,
} from './launch-digest.js';
export {
  SNP_CERT_TABLE_GUID,
  type SnpCertTableEntry,
  type SnpCertTableKind,
  parseSnpCertTable,
  encodeSnpCertTable,
} from './cert-table.js';
export {
  HCL_REPORT_MAGIC,
  HCL_REPORT_TYPE_SNP,
  HCL_REPORT_TYPE_TDX,
  HCL_RUNTIME_DATA_OFFSET,
  HCL_SNP_REPORT_OFFSET,
  HCL_VARIABLE_DATA_OFFSET,
  type HclHashName,
  type HclReport,
  type HclReportFault,
  HclReportError,
  readHclReport,
  hclExpectedReportData,
} from './hcl.js';
