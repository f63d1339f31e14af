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
}

/** Maps a nats.js failure of a request to the CCM error an operator can act on. */
export function requestFailure(subject: string, err: unknown): CcmError {
  if (err instanceof CcmError) return err;
  // nats.js v3 reports "no responders" to a request as a RequestError wrapping NoRespondersError.
  if (
    err instanceof errors.NoRespondersError ||
    (err instanceof errors.RequestError && err.isNoResponders())
  ) {
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
    return signedRequest(this.nats.nc, this.opts.identity, this.opts.trust, subject, data, resultSchema, {
      timeoutMs: this.opts.requestTimeoutMs,
      maxSkewMs: this.opts.envelopeMaxSkewMs,
      ...o,
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
