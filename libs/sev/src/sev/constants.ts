/**
 * Names, codes, sizes and offsets of the legacy SEV certificate formats (SEV API 55766 appendices B.1
 * and C.1). All multi-byte fields are little-endian.
 */

/** PUB_KEY_USAGE / SIGn_USAGE / KEY_USAGE codes (SEV API table "Usage"). */
export const SevUsage = {
  /** AMD Root Key. */
  ARK: 0x0000,
  /** AMD SEV Signing Key. */
  ASK: 0x0013,
  /** Invalid: marks an empty signature slot. */
  INVALID: 0x1000,
  /** Owner Certificate Authority. */
  OCA: 0x1001,
  /** Platform Endorsement Key. */
  PEK: 0x1002,
  /** Platform Diffie-Hellman key (also the guest owner's GODH). */
  PDH: 0x1003,
  /** Chip Endorsement Key. */
  CEK: 0x1004,
} as const;
/** A known usage code. */
export type SevUsageCode = (typeof SevUsage)[keyof typeof SevUsage];

/** PUB_KEY_ALGO / SIGn_ALGO codes (SEV API table "Algorithms"). */
export const SevAlgorithm = {
  /** Invalid / none: an empty signature slot. */
  NONE: 0x0000,
  RSA_SHA256: 0x0001,
  ECDSA_SHA256: 0x0002,
  ECDH_SHA256: 0x0003,
  RSA_SHA384: 0x0101,
  ECDSA_SHA384: 0x0102,
  ECDH_SHA384: 0x0103,
} as const;
/** A known algorithm code. */
export type SevAlgorithmCode = (typeof SevAlgorithm)[keyof typeof SevAlgorithm];

/** CURVE ids in the ECDSA/ECDH PUB_KEY layout. */
export const SevCurve = { P256: 1, P384: 2 } as const;
/** A known curve id. */
export type SevCurveId = (typeof SevCurve)[keyof typeof SevCurve];

/** Size of the SEV (platform / owner) certificate: 2084 bytes. */
export const SEV_CERT_SIZE = 0x824;
/** The only VERSION value defined. */
export const SEV_CERT_VERSION = 1;
/** Bytes covered by both signatures: VERSION through the end of PUB_KEY. */
export const SEV_CERT_SIGNED_SIZE = 0x414;

/** Field offsets inside the 2084-byte SEV certificate. */
export const SevCertOffset = {
  VERSION: 0x000,
  API_MAJOR: 0x004,
  API_MINOR: 0x005,
  RESERVED: 0x006,
  PUB_KEY_USAGE: 0x008,
  PUB_KEY_ALGO: 0x00c,
  PUB_KEY: 0x010,
  SIG1_USAGE: 0x414,
  SIG1_ALGO: 0x418,
  SIG1: 0x41c,
  SIG2_USAGE: 0x61c,
  SIG2_ALGO: 0x620,
  SIG2: 0x624,
} as const;

/** Size of the PUB_KEY area. */
export const SEV_PUB_KEY_SIZE = 0x404;
/** Size of one signature area (without its usage/algo words). */
export const SEV_SIG_SIZE = 0x200;
/** Size of one zero-padded little-endian number in the RSA PUB_KEY layout (exponent, modulus). */
export const SEV_RSA_FIELD_SIZE = 0x200;
/** Size of one zero-padded little-endian coordinate or ECDSA R/S (room for P-521). */
export const SEV_EC_FIELD_SIZE = 0x48;

/** Offsets inside the RSA PUB_KEY area. */
export const SevRsaKeyOffset = { MODULUS_SIZE: 0x000, PUB_EXP: 0x004, MODULUS: 0x204 } as const;
/** Offsets inside the ECDSA / ECDH PUB_KEY area. */
export const SevEcKeyOffset = { CURVE: 0x000, QX: 0x004, QY: 0x04c, RESERVED: 0x094 } as const;
/** Offsets inside an ECDSA signature area. */
export const SevEcdsaSigOffset = { R: 0x000, S: 0x048, RESERVED: 0x090 } as const;

/** Largest RSA modulus the SEV certificate PUB_KEY area can hold, in bits. */
export const SEV_RSA_MAX_BITS = SEV_RSA_FIELD_SIZE * 8;

/** AMD signing-key certificate (ARK / ASK): fixed header size. */
export const AMD_CERT_HEADER_SIZE = 0x40;
/** The only VERSION value defined for the AMD signing-key certificate. */
export const AMD_CERT_VERSION = 1;
/** Field offsets inside the AMD signing-key certificate header. */
export const AmdCertOffset = {
  VERSION: 0x00,
  KEY_ID: 0x04,
  CERTIFYING_ID: 0x14,
  KEY_USAGE: 0x24,
  RESERVED: 0x28,
  PUB_EXP_SIZE: 0x38,
  MODULUS_SIZE: 0x3c,
  PUB_EXP: 0x40,
} as const;
/** Size of KEY_ID / CERTIFYING_ID. */
export const AMD_KEY_ID_SIZE = 16;
/** RSA sizes (bits) AMD uses for ARK/ASK: 2048 on Naples, 4096 from Rome on. */
export const AMD_RSA_SIZES_BITS = [2048, 4096] as const;
