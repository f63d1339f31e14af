import { Inject, Injectable } from '@nestjs/common';
import { CcmError, ErrorCodes, subjects, type ErrorEffect, type GuestVerb } from '@ccm/contracts';
import { MessageBus } from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { errors } from '@nats-io/transport-node';
import { type z } from 'zod';
import { type CheckpointConfig } from '../config.js';

/** Which migration and command a guest call serves (its envelope's correlation and causation). */
export interface Cause {
  readonly migrationId: string;
  readonly causationId: string;
}

/** Whether a failed guest command may have acted: fixed, or decided from the guest's error. */
export type EffectOf = ErrorEffect | ((e: CcmError) => ErrorEffect);

/** A typed refusal by the guest-agent (not a timeout or a lost guest): the guest did nothing. */
export const refusedDidNothing = (e: CcmError): ErrorEffect => (e.retryable ? 'maybe' : 'none');

/**
 * As {@link refusedDidNothing}, unless the guest says the command took effect: a `restore` with
 * `resume` whose resume failed after the restore (`details.restored`) left the container there.
 */
export const refusedUnlessRestored = (e: CcmError): ErrorEffect =>
  e.details?.['restored'] === true ? 'maybe' : refusedDidNothing(e);

/**
 * container-checkpoint's calls to guest-agents on `ccm.cmd.guest.<vmId>.<verb>`, signed as
 * container-checkpoint. A guest's error comes back as the same code with the guest and verb in the
 * message and `details`, and the effect the calling step states.
 */
@Injectable()
export class Guests {
  constructor(
    private readonly bus: MessageBus,
    @Inject(SERVICE_CONFIG) private readonly config: CheckpointConfig,
  ) {}

  async call<S extends z.ZodType>(
    vmId: string,
    verb: GuestVerb,
    data: unknown,
    reply: S,
    cause: Cause,
    effect: EffectOf,
  ): Promise<z.infer<S>> {
    try {
      return await this.bus.request(subjects.guestCmd(vmId, verb), data, reply, {
        timeoutMs: this.config.CCM_CHECKPOINT_GUEST_TIMEOUT_MS,
        correlationId: cause.migrationId,
        causationId: cause.causationId,
      });
    } catch (err) {
      if (!(err instanceof CcmError)) throw err;
      throw new CcmError(err.code, `guest ${vmId} ${verb}: ${err.message}`, {
        retryable: err.retryable,
        effect: typeof effect === 'function' ? effect(err) : effect,
        details: { ...err.details, vmId, verb, ...(isGone(err) ? { guest: 'not-running' } : {}) },
        cause: err,
      });
    }
  }
}

/** No guest-agent is subscribed for the VM at all (NATS had no responder), as opposed to a slow one. */
export function isGone(err: CcmError): boolean {
  if (err.code !== ErrorCodes.Unavailable) return false;
  const cause = err.cause instanceof CcmError ? err.cause.cause : err.cause;
  return (
    cause instanceof errors.NoRespondersError ||
    (cause instanceof errors.RequestError && cause.isNoResponders()) ||
    err.details?.['guest'] === 'not-running'
  );
}
