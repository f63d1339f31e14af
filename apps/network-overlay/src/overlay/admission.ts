import {
  CcmError,
  ErrorCodes,
  isCcmError,
  OVERLAY_ADMISSION_TYPE,
  OverlayAdmissionSchema,
  type Envelope,
  type OverlayAdmission,
} from '@ccm/contracts';
import { type TrustStore } from '@ccm/keys';
import { verifyEnvelope } from '@ccm/messaging';

/** The one identity whose statements admit a guest to the overlay. */
export const ADMISSION_SIGNER = 'key-broker';
/** Clock skew tolerated on a statement's `verifiedAt`. */
export const ADMISSION_CLOCK_SKEW_MS = 60_000;

const refused = (reason: string, message: string, cause?: unknown) =>
  new CcmError(ErrorCodes.Refused, `admission refused: ${message}`, {
    retryable: false,
    effect: 'none',
    details: { reason },
    cause,
  });

/**
 * Checks a carried admission statement as if the carrier were hostile: signed by a key the trust
 * store lists for the key-broker (a statement any other identity signs is refused, whatever its
 * `source` says), about `vmId` when one is expected, verified no longer than `maxAgeMs` ago and not
 * expired. @throws CcmError REFUSED (non-retryable, nothing changed) with `details.reason`.
 */
export function verifyAdmission(
  env: Envelope,
  trust: TrustStore,
  opts: { now: number; maxAgeMs: number; vmId?: string },
): OverlayAdmission {
  try {
    verifyEnvelope(env, trust);
  } catch (err) {
    if (isCcmError(err))
      throw refused('signature', `the statement's signature does not hold (${err.code})`, err);
    throw err;
  }
  if (env.type !== OVERLAY_ADMISSION_TYPE || env.natssubject !== OVERLAY_ADMISSION_TYPE) {
    throw refused(
      'shape',
      `the statement is a ${env.type} bound to ${env.natssubject}, not an overlay admission`,
    );
  }
  if (env.source !== ADMISSION_SIGNER) {
    throw refused('signer', `the statement is signed by ${env.source}, not the key-broker`);
  }
  const parsed = OverlayAdmissionSchema.safeParse(env.data);
  if (!parsed.success) throw refused('shape', 'the statement is not an overlay admission');
  const a = parsed.data;
  if (opts.vmId !== undefined && a.vmId !== opts.vmId) {
    throw refused('vm', `the statement is about ${a.vmId}, not ${opts.vmId}`);
  }
  const verifiedAt = Date.parse(a.verifiedAt);
  if (Date.parse(a.expiresAt) <= opts.now || opts.now - verifiedAt > opts.maxAgeMs) {
    throw refused('stale', `the evidence of ${a.vmId} was verified at ${a.verifiedAt}: not fresh`);
  }
  if (verifiedAt - opts.now > ADMISSION_CLOCK_SKEW_MS) {
    throw refused('future', `the statement's verifiedAt ${a.verifiedAt} is in the future`);
  }
  return a;
}
