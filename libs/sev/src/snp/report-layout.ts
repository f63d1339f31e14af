/**
 * ATTESTATION_REPORT layout (SNP ABI "ATTESTATION_REPORT Structure", spec 9.1): offsets and sizes of
 * every field, in bytes. Everything is little-endian.
 */

/** Total size of an ATTESTATION_REPORT. */
export const SNP_REPORT_SIZE = 0x4a0;
/** The signature covers bytes [0, SNP_REPORT_SIGNED_SIZE). */
export const SNP_REPORT_SIGNED_SIZE = 0x2a0;

/** SIGNATURE_ALGO value for ECDSA P-384 with SHA-384, the only one defined. */
export const SNP_SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1;

/** Report versions this library decodes (4 has the version-3 layout). */
export const SNP_REPORT_VERSIONS = [2, 3, 4, 5] as const;
/** First version carrying CPUID_FAM_ID / CPUID_MOD_ID / CPUID_STEP. */
export const SNP_REPORT_VERSION_CPUID = 3;
/** First version carrying LAUNCH_MIT_VECTOR / CURRENT_MIT_VECTOR. */
export const SNP_REPORT_VERSION_MIT_VECTORS = 5;

/** `[offset, size]` of every report field. */
export const SNP_REPORT_FIELDS = {
  VERSION: [0x000, 4],
  GUEST_SVN: [0x004, 4],
  POLICY: [0x008, 8],
  FAMILY_ID: [0x010, 16],
  IMAGE_ID: [0x020, 16],
  VMPL: [0x030, 4],
  SIGNATURE_ALGO: [0x034, 4],
  CURRENT_TCB: [0x038, 8],
  PLATFORM_INFO: [0x040, 8],
  KEY_INFO: [0x048, 4],
  REPORT_DATA: [0x050, 64],
  MEASUREMENT: [0x090, 48],
  HOST_DATA: [0x0c0, 32],
  ID_KEY_DIGEST: [0x0e0, 48],
  AUTHOR_KEY_DIGEST: [0x110, 48],
  REPORT_ID: [0x140, 32],
  REPORT_ID_MA: [0x160, 32],
  REPORTED_TCB: [0x180, 8],
  CPUID_FAM_ID: [0x188, 1],
  CPUID_MOD_ID: [0x189, 1],
  CPUID_STEP: [0x18a, 1],
  CHIP_ID: [0x1a0, 64],
  COMMITTED_TCB: [0x1e0, 8],
  CURRENT_BUILD: [0x1e8, 1],
  CURRENT_MINOR: [0x1e9, 1],
  CURRENT_MAJOR: [0x1ea, 1],
  COMMITTED_BUILD: [0x1ec, 1],
  COMMITTED_MINOR: [0x1ed, 1],
  COMMITTED_MAJOR: [0x1ee, 1],
  LAUNCH_TCB: [0x1f0, 8],
  LAUNCH_MIT_VECTOR: [0x1f8, 8],
  CURRENT_MIT_VECTOR: [0x200, 8],
  SIGNATURE_R: [0x2a0, 72],
  SIGNATURE_S: [0x2e8, 72],
} as const satisfies Record<string, readonly [number, number]>;

/** Name of a report field in {@link SNP_REPORT_FIELDS}. */
export type SnpReportFieldName = keyof typeof SNP_REPORT_FIELDS;

/** Reserved ranges `[name, offset, size]` common to every version. */
export const SNP_REPORT_RESERVED_COMMON: ReadonlyArray<readonly [string, number, number]> = [
  ['RESERVED_04C', 0x04c, 4],
  ['RESERVED_18B', 0x18b, 0x1a0 - 0x18b],
  ['RESERVED_1EB', 0x1eb, 1],
  ['RESERVED_1EF', 0x1ef, 1],
  ['RESERVED_208', 0x208, 0x2a0 - 0x208],
  ['SIGNATURE_RESERVED', 0x330, 0x4a0 - 0x330],
];
/** Ranges that are reserved in version 2 only (the CPUID bytes). */
export const SNP_REPORT_RESERVED_V2: ReadonlyArray<readonly [string, number, number]> = [
  ['RESERVED_188 (CPUID bytes, v2)', 0x188, 3],
];
/** Ranges that are reserved before version 5 (the mitigation vectors). */
export const SNP_REPORT_RESERVED_BEFORE_V5: ReadonlyArray<readonly [string, number, number]> = [
  ['RESERVED_1F8 (mitigation vectors, v<5)', 0x1f8, 16],
];

/** Size of the little-endian ECDSA scalar fields (R, S) in the signature area. */
export const SNP_ECDSA_SCALAR_FIELD_SIZE = 72;
/** Significant bytes of a P-384 scalar; the rest of each 72-byte field is zero. */
export const P384_SCALAR_SIZE = 48;

/** KEY_INFO bit layout. */
export const SNP_KEY_INFO = {
  authorKeyEnBit: 0,
  maskChipKeyBit: 1,
  signingKeyShift: 2,
  signingKeyMask: 0b111,
  /** Bits 31:5 are reserved. */
  reservedMask: ~0b11111 >>> 0,
} as const;

/** KEY_INFO.SIGNING_KEY values. */
export const SNP_SIGNING_KEY = { VCEK: 0, VLEK: 1, NONE: 7 } as const;

/** PLATFORM_INFO bit positions (spec 9.1; meanings tagged [S] there). */
export const SNP_PLATFORM_INFO_BITS = {
  smtEnabled: 0,
  tsmeEnabled: 1,
  eccEnabled: 2,
  raplDisabled: 3,
  ciphertextHidingEnabled: 4,
  aliasCheckComplete: 5,
  tioEnabled: 7,
} as const;
