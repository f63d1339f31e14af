import { randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  CcmError,
  ErrorCodes,
  ReplySchema,
  validationError,
  type ChainAttributes,
  type Envelope,
} from '@ccm/contracts';
import { DEFAULT_REQUEST_TIMEOUT_MS } from '@ccm/config';
import { type Identity, type TrustStore } from '@ccm/keys';
import { errors, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { type z } from 'zod';
import { MemoryChains, publisherName } from './chain.js';
import { encodeEnvelope, openEnvelope, sealEnvelope, type EnvelopeFields } from './envelope-codec.js';
import { NatsService } from './nats.service.js';
import { MESSAGING_OPTIONS, type MessagingOptions } from './options.js';

export interface RequestOptions {
  timeoutMs?: number;
  idempotencyKey?: string;
  correlationId?: string;
  causationId?: string;
  /** How far the reply's time may be from this clock; default `DEFAULT_ENVELOPE_MAX_SKEW_MS`. */
  maxSkewMs?: number;
  /**
   * Sends the request again, with the same idempotency key, each time it stays unanswered this long,
   * until `timeoutMs` in all: a callee killed with the request in hand lost it, and its restart (or
   * another replica) takes the repeat; one still working on it joins the repeat to the run in hand
   * (needs `idempotencyKey`). After the first send, nobody listening is waited out the same way: the
   * first send may have acted. Without it, one send waits the whole `timeoutMs`.
   */
  resendEveryMs?: number;
  /** Called before each repeat (its number, 2 for the first repeat). */
  onResend?: (send: number) => void;
}

/** Maps a nats.js failure of a request to the CCM error an operator can act on. */
export function requestFailure(subject: string, err: unknown): CcmError {
  if (err instanceof CcmError) return err;
  // nats.js v3 reports "no responders" to a request as a RequestError wrapping NoRespondersError.
  if (isNoResponders(err)) {
    return new CcmError(ErrorCodes.Unavailable, `no service answers on ${subject}`, {
      retryable: true,
      cause: err,
    });
  }
  if (err instanceof errors.TimeoutError) {
    return new CcmError(ErrorCodes.Timeout, `no reply on ${subject} in time`, {
      retryable: true,
      cause: err,
    });
  }
  if (err instanceof errors.PermissionViolationError) {
    return new CcmError(ErrorCodes.Unauthorized, `NATS refused ${subject}: ${err.message}`, {
      retryable: false,
      cause: err,
    });
  }
  return new CcmError(ErrorCodes.Unavailable, `request on ${subject} failed: ${(err as Error).message}`, {
    retryable: true,
    cause: err,
  });
}

/**
 * One signed request/reply: seals `data` as the identity, sends it, opens and verifies the signed reply
 * and validates its result. Throws the CcmError the responder replied, or TIMEOUT / UNAVAILABLE /
 * UNAUTHORIZED for transport failures. Used by services (through MessageBus) and by the CLI.
 */
export async function signedRequest<S extends z.ZodType>(
  nc: NatsConnection,
  identity: Identity,
  trust: TrustStore,
  subject: string,
  data: unknown,
  resultSchema: S,
  o: RequestOptions = {},
): Promise<z.infer<S>> {
  const env = sealEnvelope(identity, {
    natssubject: subject,
    type: subject,
    data,
    idempotencykey: o.idempotencyKey,
    correlationid: o.correlationId,
    causationid: o.causationId,
  });
  let msg: Msg;
  try {
    msg = await nc.request(subject, encodeEnvelope(env), {
      timeout: o.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    });
  } catch (err) {
    throw requestFailure(subject, err);
  }
  // The reply must be signed for our inbox, answer this very request and be fresh: an old reply
  // replayed into the inbox is refused.
  const reply = openEnvelope(msg.data, trust, ReplySchema, {
    subject: msg.subject,
    types: [`${subject}.reply`],
    at: Date.now(),
    maxSkewMs: o.maxSkewMs,
  });
  if (reply.causationid !== env.id) {
    throw new CcmError(
      ErrorCodes.Misaddressed,
      `reply from ${reply.source} on ${subject} answers ${reply.causationid ?? 'nothing'}, not ${env.id}`,
      { retryable: false },
    );
  }
  if (!reply.data.ok) throw CcmError.fromPayload(reply.data.error);
  const result = resultSchema.safeParse(reply.data.result);
  if (!result.success) throw validationError(`reply from ${reply.source} on ${subject}`, result.error.issues);
  return result.data;
}

/** Whether a request's failure says nobody listened on its subject. */
export function isNoResponders(cause: unknown): boolean {
  return (
    cause instanceof errors.NoRespondersError ||
    (cause instanceof errors.RequestError && cause.isNoResponders())
  );
}

/** The loop of {@link RequestOptions.resendEveryMs}: each send waits at most until the next repeat. */
async function resending<T>(
  subject: string,
  send: (timeoutMs: number) => Promise<T>,
  o: { deadlineAt: number; everyMs: number; onResend?: (send: number) => void },
): Promise<T> {
  for (let n = 1; ; n += 1) {
    const sentAt = Date.now();
    try {
      return await send(Math.max(1, Math.min(o.deadlineAt - sentAt, o.everyMs)));
    } catch (err) {
      const cause = err instanceof CcmError ? err.cause : err;
      const timedOut = cause instanceof errors.TimeoutError;
      if (!timedOut && !(n > 1 && isNoResponders(cause))) throw err;
      // Unanswered, or nobody listens yet: wait out the interval (never past the deadline).
      const nextAt = Math.min(sentAt + o.everyMs, o.deadlineAt);
      if (nextAt > Date.now()) await new Promise((r) => setTimeout(r, nextAt - Date.now()));
      if (Date.now() >= o.deadlineAt) {
        throw timedOut
          ? err
          : new CcmError(ErrorCodes.Timeout, `no reply on ${subject} in time`, {
              retryable: true,
              cause: new errors.TimeoutError(),
            });
      }
      o.onResend?.(n + 1);
    }
  }
}

/** Sends signed requests and events, and opens signed replies. */
@Injectable()
export class MessageBus {
  private readonly chains: MemoryChains;

  constructor(
    private readonly nats: NatsService,
    @Inject(MESSAGING_OPTIONS) private readonly opts: MessagingOptions,
  ) {
    // A process of its own: its chains are new ones, whatever an earlier process of this instance wrote.
    const instance = `${opts.instanceId}-${randomBytes(4).toString('hex')}`;
    this.chains = new MemoryChains(publisherName(opts.service, opts.scopeId, instance));
  }

  seal<T>(fields: EnvelopeFields<T>): Envelope<T> {
    return sealEnvelope(this.opts.identity, fields);
  }

  /** Request/reply on core NATS; returns the validated result or throws the typed error replied. */
  request<S extends z.ZodType>(
    subject: string,
    data: unknown,
    resultSchema: S,
    o: RequestOptions = {},
  ): Promise<z.infer<S>> {
    const { resendEveryMs, onResend, ...rest } = o;
    const opts = { timeoutMs: this.opts.requestTimeoutMs, maxSkewMs: this.opts.envelopeMaxSkewMs, ...rest };
    const send = (timeoutMs: number) =>
      signedRequest(this.nats.nc, this.opts.identity, this.opts.trust, subject, data, resultSchema, {
        ...opts,
        timeoutMs,
      });
    if (resendEveryMs === undefined) return send(opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
    if (!rest.idempotencyKey) {
      throw new TypeError(`a request to ${subject} sent again needs an idempotency key`);
    }
    return resending(subject, send, {
      deadlineAt: Date.now() + (opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS),
      everyMs: resendEveryMs,
      ...(onResend ? { onResend } : {}),
    });
  }

  /**
   * Publishes a signed event or intake request straight to JetStream, deduplicated by envelope id.
   * Services with a database write events through the outbox instead, in their state transaction.
   * An event about a migration (`correlationid`) joins this process's hash chain for it.
   */
  async publish<T>(subject: string, fields: Omit<EnvelopeFields<T>, 'natssubject'>): Promise<Envelope<T>> {
    const send = async (chain?: ChainAttributes): Promise<Envelope<T>> => {
      const env = this.seal({ ...fields, natssubject: subject, chain });
      await this.nats.js.publish(subject, encodeEnvelope(env), { msgID: env.id });
      return env;
    };
    if (!fields.correlationid || !subject.startsWith('ccm.evt.')) return send();
    return this.chains.append(fields.correlationid, fields.chainGenesis, send);
  }
}
