import { z } from 'zod';

/**
 * Stable error codes that cross NATS. A code never changes meaning; `retryable` says whether sending
 * the same request again can help (Temporal's ApplicationFailure idea).
 */
export const ErrorCodes = {
  /** The payload or envelope did not match its schema. Not retryable: fix the sender. */
  ValidationFailed: 'VALIDATION_FAILED',
  /** The message was not valid JSON or not an envelope at all. */
  MalformedMessage: 'MALFORMED_MESSAGE',
  /** The envelope carries no signature. */
  SignatureMissing: 'SIGNATURE_MISSING',
  /** The signature does not verify over the envelope (tampered or wrong key). */
  SignatureInvalid: 'SIGNATURE_INVALID',
  /** The signing key is not in this receiver's trust store. */
  UnknownSigner: 'UNKNOWN_SIGNER',
  /** The envelope arrived on a NATS subject, or with a type, other than the one it was signed for. */
  Misaddressed: 'MISADDRESSED',
  /** The envelope's time is further from the receiver's clock than the allowed skew. */
  Stale: 'STALE',
  /** An envelope with this id was already received: a replay, refused. */
  Replayed: 'REPLAYED',
  /** The signer is known but not allowed to send this message. */
  Unauthorized: 'UNAUTHORIZED',
  /** The thing asked for does not exist. */
  NotFound: 'NOT_FOUND',
  /** The request conflicts with current state (e.g. the workload is already migrating). */
  Conflict: 'CONFLICT',
  /** The request is refused for a stated reason (e.g. cancel after the point of no return). */
  Refused: 'REFUSED',
  /** A dependency did not answer in time. Retryable. */
  Timeout: 'TIMEOUT',
  /** A dependency is unavailable right now. Retryable. */
  Unavailable: 'UNAVAILABLE',
  /** Something unexpected failed inside the service; details are in its log, not on the wire. */
  Internal: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes] | (string & {});

const RETRYABLE_BY_DEFAULT = new Set<string>([ErrorCodes.Timeout, ErrorCodes.Unavailable]);

/**
 * Whether a failed command may have changed anything: `none` (the responder knows it did nothing, so
 * nothing needs undoing) or `maybe`. A saga decides from it whether a failed step needs compensating.
 */
export const ERROR_EFFECTS = ['none', 'maybe'] as const;
export type ErrorEffect = (typeof ERROR_EFFECTS)[number];

/** The error as it travels in a reply or an event. */
export const ErrorPayloadSchema = z.object({
  code: z.string().min(1),
  retryable: z.boolean(),
  message: z.string(),
  /** Whether the failed command may have taken effect; unset when the responder does not say. */
  effect: z.enum(ERROR_EFFECTS).optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});
export type ErrorPayload = z.infer<typeof ErrorPayloadSchema>;

/**
 * The one error class that crosses NATS. Handlers throw it (or a subclass) to send a typed error
 * reply; anything else thrown is logged and sent as a generic INTERNAL error.
 */
export class CcmError extends Error {
  override readonly name: string = 'CcmError';
  readonly retryable: boolean;
  /** Whether the failed command may have taken effect (see {@link ErrorEffect}); unset: not said. */
  readonly effect: ErrorEffect | undefined;
  constructor(
    readonly code: ErrorCode,
    message: string,
    opts: {
      retryable?: boolean;
      effect?: ErrorEffect;
      details?: Record<string, unknown>;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: opts.cause });
    this.retryable = opts.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
    this.effect = opts.effect;
    this.details = opts.details;
  }
  readonly details: Record<string, unknown> | undefined;

  toPayload(): ErrorPayload {
    return {
      code: this.code,
      retryable: this.retryable,
      message: this.message,
      ...(this.effect ? { effect: this.effect } : {}),
      ...(this.details ? { details: this.details } : {}),
    };
  }

  static fromPayload(p: ErrorPayload): CcmError {
    return new CcmError(p.code, p.message, {
      retryable: p.retryable,
      ...(p.effect ? { effect: p.effect } : {}),
      details: p.details,
    });
  }
}

export function isCcmError(err: unknown, code?: ErrorCode): err is CcmError {
  return err instanceof CcmError && (code === undefined || err.code === code);
}

/** Flattens schema issues into details an operator can read: `path: problem`. */
export function validationError(
  what: string,
  issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>,
): CcmError {
  const problems = issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
  return new CcmError(ErrorCodes.ValidationFailed, `${what} is invalid: ${problems.join('; ')}`, {
    retryable: false,
    details: { problems },
  });
}
