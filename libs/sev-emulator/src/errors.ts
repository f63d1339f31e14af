import {
  SevBadMacError,
  SevBadSignatureError,
  SevError,
  SevInvalidLengthError,
  SevInvalidParamError,
  SevInvalidStateError,
  SevMissingSignatureError,
  SevPolicyError,
  SevTruncatedError,
  SevUntrustedRootError,
  SevWrongGenerationError,
} from '@ccm/sev';
import { SEV_STATUS, type SevCommandName, type SevStatusName } from './status.js';

/**
 * Root of every error the software secure processor throws: a firmware command that did not return
 * SUCCESS. `code` is the status name of the SEV API (`POLICY_FAILURE`, `BAD_MEASUREMENT`, …), `status`
 * its numeric value, `command` the command that failed and `reason` a stable, finer-grained tag where
 * one status covers several causes (`'packet-mac'` vs `'replayed-iv'`). Branch on `code`/`reason` or
 * {@link isSevFirmwareError}, never on message text.
 */
export class SevFirmwareError extends Error {
  readonly status: number;

  constructor(
    readonly code: SevStatusName,
    readonly command: SevCommandName | undefined,
    readonly detail: string,
    options: { readonly cause?: unknown; readonly reason?: string } = {},
  ) {
    super(`${command ?? 'firmware'}: ${code}: ${detail}`, { cause: options.cause });
    this.name = new.target.name;
    this.status = SEV_STATUS[code];
    this.reason = options.reason;
  }

  /** A stable sub-cause for statuses that cover several failures; undefined when the status says it all. */
  readonly reason: string | undefined;
}

/** INVALID_LENGTH: a buffer has the wrong size; `requiredLength` is what the firmware would write back. */
export class SevFirmwareLengthError extends SevFirmwareError {
  constructor(
    command: SevCommandName,
    readonly what: string,
    readonly requiredLength: number | string,
    readonly actualLength: number,
  ) {
    super('INVALID_LENGTH', command, `${what}: needs ${requiredLength} bytes, got ${actualLength}`);
  }
}

/**
 * HWERROR_PLATFORM raised while loading or saving the persistent platform state (a corrupt or
 * inconsistent state directory): the emulated chip fails its self-test instead of running with a
 * half-written identity.
 */
export class SevStateStoreError extends SevFirmwareError {
  constructor(
    readonly path: string,
    detail: string,
    options: { readonly cause?: unknown } = {},
  ) {
    super('HWERROR_PLATFORM', undefined, `${path}: ${detail}`, { ...options, reason: 'state-store' });
  }
}

/** Why a guest context export or import was refused: the `reason` of {@link SevGuestContextError}. */
export type SevGuestContextFault =
  /** Shorter than its header says. */
  | 'truncated'
  /** Not a sealed guest context (wrong magic, non-zero reserved field, trailing bytes, bad body). */
  | 'malformed'
  /** A format version this firmware does not read. */
  | 'version'
  /** Sealed by another chip. */
  | 'foreign-platform'
  /** The seal does not verify: the bytes were changed. */
  | 'integrity'
  /** A live guest already has the context's handle. */
  | 'handle-in-use'
  /** A live guest holds the context's ASID, or it awaits DF_FLUSH. */
  | 'asid-in-use'
  /** No guest context is left (the platform's ASID count). */
  | 'no-room'
  /** The platform is not INIT or WORKING. */
  | 'platform-state'
  /** The guest is in a state or of a kind that is not exported (see `exportGuest`). */
  | 'not-exportable';

/**
 * A guest context export or import was refused. `fault` (also `reason`) says why; `code` is the
 * status the firmware answers with (`SECURE_DATA_INVALID` for a changed or foreign context,
 * `INVALID_LENGTH`, `UNSUPPORTED`, `ASID_OWNED`, …).
 */
export class SevGuestContextError extends SevFirmwareError {
  constructor(
    readonly fault: SevGuestContextFault,
    code: SevStatusName,
    detail: string,
    options: { readonly cause?: unknown } = {},
  ) {
    super(code, undefined, `guest context: ${detail}`, { ...options, reason: fault });
  }
}

/** True for a refused guest context export or import; with `fault`, only for that cause. */
export function isSevGuestContextError(
  err: unknown,
  fault?: SevGuestContextFault,
): err is SevGuestContextError {
  return err instanceof SevGuestContextError && (fault === undefined || err.fault === fault);
}

/** True for every emulator error; with `code`, only for that status. */
export function isSevFirmwareError(err: unknown, code?: SevStatusName): err is SevFirmwareError {
  return err instanceof SevFirmwareError && (code === undefined || err.code === code);
}

/** Throws `code` for `command` unless `condition` holds. */
export function ensure(
  condition: unknown,
  code: SevStatusName,
  command: SevCommandName,
  detail: string,
  reason?: string,
): asserts condition {
  if (!condition) throw new SevFirmwareError(code, command, detail, { reason });
}

function statusOf(err: SevError): { code: SevStatusName; reason: string } {
  if (err instanceof SevBadMacError) {
    if (err.which === 'POLICY_MAC') return { code: 'POLICY_FAILURE', reason: 'policy-mac' };
    return { code: 'BAD_MEASUREMENT', reason: err.which === 'WRAP_MAC' ? 'wrap-mac' : 'packet-mac' };
  }
  if (err instanceof SevTruncatedError || err instanceof SevInvalidLengthError) {
    return { code: 'INVALID_LENGTH', reason: 'length' };
  }
  if (err instanceof SevBadSignatureError || err instanceof SevMissingSignatureError) {
    return { code: 'BAD_SIGNATURE', reason: 'signature' };
  }
  if (err instanceof SevUntrustedRootError || err instanceof SevWrongGenerationError) {
    return { code: 'INVALID_CERTIFICATE', reason: 'untrusted-chain' };
  }
  if (err instanceof SevPolicyError) return { code: 'POLICY_FAILURE', reason: 'policy' };
  if (err instanceof SevInvalidStateError) return { code: 'INVALID_GUEST_STATE', reason: 'sequence' };
  if (err instanceof SevInvalidParamError) return { code: 'INVALID_PARAM', reason: 'param' };
  return { code: 'INVALID_CERTIFICATE', reason: err.code.toLowerCase() };
}

/**
 * Runs a step that calls into libs/sev and turns its typed errors into the status the firmware returns
 * (MAC failures → BAD_MEASUREMENT, POLICY_MAC → POLICY_FAILURE, signatures → BAD_SIGNATURE, malformed
 * certificates → INVALID_CERTIFICATE, sizes → INVALID_LENGTH). `fallback` overrides the status chosen
 * for malformed input when the command defines another one.
 */
export function asFirmware<T>(command: SevCommandName, fn: () => T, fallback?: SevStatusName): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof SevFirmwareError || !(err instanceof SevError)) throw err;
    const mapped = statusOf(err);
    const code = fallback && mapped.code === 'INVALID_CERTIFICATE' ? fallback : mapped.code;
    throw new SevFirmwareError(code, command, err.message, { cause: err, reason: mapped.reason });
  }
}
