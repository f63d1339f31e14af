import { SevError } from '../errors.js';

/**
 * Error taxonomy of the SEV / SEV-ES half. Every failure has its own class with a stable `code` and
 * context fields; callers branch on `instanceof` or `code`, never on message text.
 */

/** Input ended before a fixed-size structure did (e.g. a 2083-byte SEV certificate). */
export class SevTruncatedError extends SevError {
  readonly code = 'TRUNCATED';
  constructor(
    readonly what: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`${what}: needs ${expected} bytes, got ${actual}`);
  }
}

/** Input has the wrong length for an exact-length structure (too long, or not a whole number of items). */
export class SevInvalidLengthError extends SevError {
  readonly code = 'INVALID_LENGTH';
  constructor(
    readonly what: string,
    readonly expected: number | string,
    readonly actual: number,
  ) {
    super(`${what}: expected ${expected} bytes, got ${actual}`);
  }
}

/** A usage code (PUB_KEY_USAGE, SIGn_USAGE, KEY_USAGE) that is not in the SEV API tables. */
export class SevUnknownUsageError extends SevError {
  readonly code = 'UNKNOWN_USAGE';
  constructor(
    readonly field: string,
    readonly value: number,
  ) {
    super(`${field}: unknown usage code 0x${value.toString(16)}`);
  }
}

/** An algorithm code that is unknown, or known but not allowed where it appears. */
export class SevUnknownAlgorithmError extends SevError {
  readonly code = 'UNKNOWN_ALGORITHM';
  constructor(
    readonly field: string,
    readonly value: number,
    reason = 'unknown algorithm code',
  ) {
    super(`${field}: ${reason} 0x${value.toString(16)}`);
  }
}

/** An elliptic-curve id other than 1 (P-256) or 2 (P-384), or a curve the operation does not support. */
export class SevUnknownCurveError extends SevError {
  readonly code = 'UNKNOWN_CURVE';
  constructor(readonly value: number) {
    super(`unknown or unsupported curve id ${value}`);
  }
}

/** Bytes (or bits) the spec reserves as zero are not zero. */
export class SevReservedBytesError extends SevError {
  readonly code = 'RESERVED_NONZERO';
  constructor(
    readonly field: string,
    readonly offset: number,
  ) {
    super(`${field}: reserved byte/bit at 0x${offset.toString(16)} is not zero`);
  }
}

/** A certificate is well-formed bytes but not a valid certificate for its role (version, sizes, usage). */
export class SevInvalidCertificateError extends SevError {
  readonly code = 'INVALID_CERTIFICATE';
  constructor(
    readonly subject: string,
    readonly reason: string,
  ) {
    super(`${subject}: ${reason}`);
  }
}

/** A signature slot exists for the signer but does not verify. */
export class SevBadSignatureError extends SevError {
  readonly code = 'BAD_SIGNATURE';
  constructor(
    readonly subject: string,
    readonly signer: string,
    reason = 'signature does not verify',
  ) {
    super(`${subject} signed by ${signer}: ${reason}`);
  }
}

/** No signature slot carries the signer's usage (e.g. a PEK without a CEK signature). */
export class SevMissingSignatureError extends SevError {
  readonly code = 'MISSING_SIGNATURE';
  constructor(
    readonly subject: string,
    readonly signer: string,
  ) {
    super(`${subject}: no signature slot for ${signer}`);
  }
}

/** Certificates from different product generations were mixed (e.g. a Naples CEK under a Rome ASK). */
export class SevWrongGenerationError extends SevError {
  readonly code = 'WRONG_GENERATION';
  constructor(
    readonly subject: string,
    readonly detail: string,
  ) {
    super(`${subject}: ${detail}`);
  }
}

/** The ARK is not one of AMD's pinned roots (unknown KEY_ID, or a known KEY_ID with a different key). */
export class SevUntrustedRootError extends SevError {
  readonly code = 'UNTRUSTED_ROOT';
  constructor(readonly reason: string) {
    super(`ARK is not a trusted AMD root: ${reason}`);
  }
}

/** An HMAC did not match: WRAP_MAC, POLICY_MAC or a packet MAC. */
export class SevBadMacError extends SevError {
  readonly code = 'BAD_MAC';
  constructor(readonly which: 'WRAP_MAC' | 'POLICY_MAC' | 'PACKET_MAC') {
    super(`${which} does not verify`);
  }
}

/** A LAUNCH_MEASURE value does not match the expected launch. */
export class SevBadMeasurementError extends SevError {
  readonly code = 'BAD_MEASUREMENT';
  constructor(
    readonly expectedHex: string,
    readonly actualHex: string,
  ) {
    super(`launch measurement mismatch: expected ${expectedHex}, got ${actualHex}`);
  }
}

/** The guest policy forbids the operation (e.g. NOSEND on a migration, DOMAIN to a foreign OCA). */
export class SevPolicyError extends SevError {
  readonly code = 'POLICY_FAILURE';
  constructor(readonly violations: readonly string[]) {
    super(`guest policy violated: ${violations.join('; ')}`);
  }
}

/** A caller-supplied parameter is malformed (bad hex/base64, bad key size, bad JSON shape). */
export class SevInvalidParamError extends SevError {
  readonly code = 'INVALID_PARAM';
  constructor(
    readonly param: string,
    readonly reason: string,
  ) {
    super(`${param}: ${reason}`);
  }
}

/** An OVMF image lacks what the operation needs (footer GUID table, hashes-table area). */
export class SevFirmwareImageError extends SevError {
  readonly code = 'INVALID_FIRMWARE_IMAGE';
  constructor(readonly reason: string) {
    super(`OVMF image: ${reason}`);
  }
}

/** A step was attempted out of order (e.g. LAUNCH_UPDATE_DATA after a VMSA was measured). */
export class SevInvalidStateError extends SevError {
  readonly code = 'INVALID_GUEST_STATE';
  constructor(readonly reason: string) {
    super(reason);
  }
}
