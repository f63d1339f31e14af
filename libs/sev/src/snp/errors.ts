import { SevError } from '../errors.js';

/**
 * Error taxonomy of the SNP half: one class per failure, each with a stable `code` and the context a
 * caller needs to act (field names follow the SNP ABI). Never match on message text.
 */
export abstract class SnpError extends SevError {}

/** True for every error thrown by the SNP half of libs/sev. */
export function isSnpError(err: unknown): err is SnpError {
  return err instanceof SnpError;
}

/** Input shorter (or, for exact-size structures, longer) than the structure it must hold. */
export class SnpTruncatedInputError extends SnpError {
  readonly code = 'SNP_TRUNCATED_INPUT';
  constructor(
    readonly what: string,
    readonly expectedBytes: number,
    readonly actualBytes: number,
  ) {
    super(`${what}: expected ${expectedBytes} bytes, got ${actualBytes}`);
  }
}

/** ATTESTATION_REPORT.VERSION this library does not know the layout of. */
export class SnpUnsupportedReportVersionError extends SnpError {
  readonly code = 'SNP_UNSUPPORTED_REPORT_VERSION';
  constructor(readonly version: number) {
    super(`unsupported SNP attestation report version ${version}`);
  }
}

/** A reserved (must-be-zero, or for policy bit 17 must-be-one) range holds another value. */
export class SnpReservedFieldError extends SnpError {
  readonly code = 'SNP_RESERVED_FIELD';
  constructor(
    readonly field: string,
    readonly offset: number,
    detail = 'must be zero',
  ) {
    super(`${field} at offset 0x${offset.toString(16)}: reserved, ${detail}`);
  }
}

/** A defined field holds a value the ABI does not allow (unknown algorithm, out-of-range SPL, ...). */
export class SnpInvalidFieldError extends SnpError {
  readonly code = 'SNP_INVALID_FIELD';
  constructor(
    readonly field: string,
    readonly value: string,
    readonly reason: string,
  ) {
    super(`${field} = ${value}: ${reason}`);
  }
}

/** The product line (Milan, Genoa, Turin) cannot be told from the input and was not supplied. */
export class SnpUnknownGenerationError extends SnpError {
  readonly code = 'SNP_UNKNOWN_GENERATION';
  constructor(readonly detail: string) {
    super(`cannot determine the SEV-SNP product line: ${detail}`);
  }
}

/** Two pieces of evidence name different product lines (e.g. a Milan VCEK under a Genoa ARK). */
export class SnpGenerationMismatchError extends SnpError {
  readonly code = 'SNP_WRONG_GENERATION';
  constructor(
    readonly expected: string,
    readonly actual: string,
    readonly where: string,
  ) {
    super(`${where}: product line ${actual}, expected ${expected}`);
  }
}

/** Why a report signature did not verify. */
export type SnpSignatureFailure =
  'mismatch' | 'unsigned' | 'unsupported-algorithm' | 'wrong-key-type' | 'malformed';

/** The report's ECDSA P-384 signature does not verify with the given VCEK/VLEK key. */
export class SnpSignatureError extends SnpError {
  readonly code = 'SNP_BAD_SIGNATURE';
  constructor(
    readonly reason: SnpSignatureFailure,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`report signature: ${detail}`, options);
  }
}

/** Certificates of an SNP chain: the root, the ASK (or ASVK), the VCEK (or VLEK). */
export type SnpChainLink = 'ark' | 'ask' | 'vek';

/** Why one link of an SNP certificate chain was rejected. */
export type SnpChainFailure =
  | 'malformed'
  | 'untrusted-root'
  | 'wrong-generation'
  | 'issuer-mismatch'
  | 'unexpected-subject'
  | 'bad-algorithm'
  | 'bad-signature'
  | 'wrong-key-type'
  | 'not-a-ca'
  | 'not-yet-valid'
  | 'expired';

/** One link of a VCEK/VLEK chain failed; `link` names the certificate, `reason` the check. */
export class SnpChainError extends SnpError {
  readonly code = 'SNP_CHAIN_INVALID';
  constructor(
    readonly link: SnpChainLink,
    readonly reason: SnpChainFailure,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${link.toUpperCase()}: ${reason}: ${detail}`, options);
  }
}

/** One TCB component that differs between two sources (report vs. certificate, or actual vs. minimum). */
export interface SnpTcbFieldDifference {
  readonly field: 'fmc' | 'bootLoader' | 'tee' | 'snp' | 'microcode';
  readonly expected: number;
  readonly actual: number;
}

/** REPORTED_TCB differs from the SPL extensions of the VCEK/VLEK that signed the report. */
export class SnpTcbMismatchError extends SnpError {
  readonly code = 'SNP_TCB_MISMATCH';
  constructor(readonly differences: readonly SnpTcbFieldDifference[]) {
    super(
      `REPORTED_TCB disagrees with the certificate: ${differences
        .map((d) => `${d.field} report=${d.actual} cert=${d.expected}`)
        .join(', ')}`,
    );
  }
}

/** A TCB is below the required minimum in at least one component. */
export class SnpTcbTooLowError extends SnpError {
  readonly code = 'SNP_TCB_TOO_LOW';
  constructor(readonly differences: readonly SnpTcbFieldDifference[]) {
    super(
      `TCB below the minimum: ${differences.map((d) => `${d.field} ${d.actual} < ${d.expected}`).join(', ')}`,
    );
  }
}

/** Two TCB values with different layouts (Milan/Genoa vs. Turin) cannot be compared. */
export class SnpTcbLayoutMismatchError extends SnpError {
  readonly code = 'SNP_TCB_LAYOUT_MISMATCH';
  constructor(
    readonly left: string,
    readonly right: string,
  ) {
    super(`cannot compare a ${left} TCB with a ${right} TCB`);
  }
}

/** A report field differs from what the verifier expected (REPORT_DATA, MEASUREMENT, CHIP_ID, ...). */
export class SnpReportFieldMismatchError extends SnpError {
  readonly code = 'SNP_REPORT_FIELD_MISMATCH';
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${field}: expected ${expected}, got ${actual}`);
  }
}

/** The VCEK's hwID extension is not the report's CHIP_ID: the report comes from another chip. */
export class SnpChipIdMismatchError extends SnpError {
  readonly code = 'SNP_CHIP_ID_MISMATCH';
  constructor(
    readonly reportChipId: string,
    readonly certificateHwId: string,
  ) {
    super(`report CHIP_ID ${reportChipId} is not the VCEK hwID ${certificateHwId}`);
  }
}

/** KEY_INFO.SIGNING_KEY names another key kind than the certificate given (VCEK vs. VLEK). */
export class SnpSigningKeyMismatchError extends SnpError {
  readonly code = 'SNP_SIGNING_KEY_MISMATCH';
  constructor(
    readonly reportSigningKey: string,
    readonly certificateKind: string,
  ) {
    super(`report says it is signed by ${reportSigningKey}, certificate is a ${certificateKind}`);
  }
}

/** The guest policy in the report breaks the verifier's policy requirements. */
export class SnpPolicyViolationError extends SnpError {
  readonly code = 'SNP_POLICY_VIOLATION';
  constructor(readonly violations: readonly string[]) {
    super(`guest policy rejected: ${violations.join('; ')}`);
  }
}

/** An X.509 certificate could not be read, or lacks an AMD extension the SNP checks need. */
export class SnpCertificateError extends SnpError {
  readonly code = 'SNP_BAD_CERTIFICATE';
  constructor(
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`certificate: ${detail}`, options);
  }
}
