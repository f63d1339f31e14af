import type { SnpGuestPolicy } from './policy.js';
import type { SnpGeneration, TcbLayout } from './generation.js';
import type { TcbVersion } from './tcb.js';

/** Which key signed a report (KEY_INFO.SIGNING_KEY): chip-unique VCEK, cloud-loaded VLEK, or none. */
export type SnpSigningKey = 'VCEK' | 'VLEK' | 'none';

/** KEY_INFO, decoded. */
export interface SnpKeyInfo {
  /** AUTHOR_KEY_DIGEST is present (the ID block was signed by an author key). */
  readonly authorKeyEn: boolean;
  /** MASK_CHIP_KEY: the firmware did not sign the report (signature all zero). */
  readonly maskChipKey: boolean;
  readonly signingKey: SnpSigningKey;
}

/** PLATFORM_INFO, decoded; `raw` keeps bits this library does not name (they are not rejected). */
export interface SnpPlatformInfo {
  readonly raw: bigint;
  readonly smtEnabled: boolean;
  readonly tsmeEnabled: boolean;
  readonly eccEnabled: boolean;
  readonly raplDisabled: boolean;
  readonly ciphertextHidingEnabled: boolean;
  readonly aliasCheckComplete: boolean;
  readonly tioEnabled: boolean;
}

/** Firmware version bytes (CURRENT_* / COMMITTED_*). */
export interface SnpFirmwareVersion {
  readonly major: number;
  readonly minor: number;
  readonly build: number;
}

/** CPUID_FAM_ID / CPUID_MOD_ID / CPUID_STEP of a v3+ report (combined family and model). */
export interface SnpCpuid {
  readonly family: number;
  readonly model: number;
  readonly stepping: number;
}

/** ECDSA signature as stored in the report: R and S, each a 72-byte little-endian field. */
export interface SnpReportSignature {
  readonly r: Uint8Array;
  readonly s: Uint8Array;
}

/**
 * A decoded SNP ATTESTATION_REPORT (versions 2–5). Byte fields are copies. TCB fields are decoded with
 * `tcbLayout`; `generation` is known for v3+ (from CPUID) or when the caller supplied it.
 */
export interface SnpAttestationReport {
  readonly version: number;
  readonly guestSvn: number;
  readonly policy: SnpGuestPolicy;
  readonly familyId: Uint8Array;
  readonly imageId: Uint8Array;
  readonly vmpl: number;
  readonly signatureAlgo: number;
  readonly currentTcb: TcbVersion;
  readonly platformInfo: SnpPlatformInfo;
  readonly keyInfo: SnpKeyInfo;
  readonly reportData: Uint8Array;
  readonly measurement: Uint8Array;
  readonly hostData: Uint8Array;
  readonly idKeyDigest: Uint8Array;
  readonly authorKeyDigest: Uint8Array;
  readonly reportId: Uint8Array;
  readonly reportIdMa: Uint8Array;
  /** The TCB the signing VCEK is derived from; compare with the VCEK's SPL extensions. */
  readonly reportedTcb: TcbVersion;
  /** Present from version 3. */
  readonly cpuid?: SnpCpuid;
  readonly chipId: Uint8Array;
  readonly committedTcb: TcbVersion;
  readonly currentVersion: SnpFirmwareVersion;
  readonly committedVersion: SnpFirmwareVersion;
  readonly launchTcb: TcbVersion;
  /** Present from version 5. */
  readonly launchMitVector?: bigint;
  /** Present from version 5. */
  readonly currentMitVector?: bigint;
  readonly signature: SnpReportSignature;
  readonly tcbLayout: TcbLayout;
  readonly generation?: SnpGeneration;
}
