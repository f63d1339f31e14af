import { Inject, Injectable } from '@nestjs/common';
import { CcmError, ErrorCodes, ReplySchema, validationError, type Envelope } from '@ccm/contracts';
import { errors } from '@nats-io/transport-node';
import { type z } from 'zod';
import { encodeEnvelope, openEnvelope, sealEnvelope, type EnvelopeFields } from './envelope-codec.js';
import { NatsService } from './nats.service.js';
import { MESSAGING_OPTIONS, type MessagingOptions } from './options.js';

export interface RequestOptions {
  timeoutMs?: number;
  idempotencyKey?: string;
  correlationId?: string;
  causationId?: string;
}

/** Maps a nats.js failure of a request to the CCM error an operator can act on. */
export function requestFailure(subject: string, err: unknown): CcmError {
  if (err instanceof CcmError) return err;
  if (err instanceof errors.NoRespondersError) {
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

/** Sends signed requests and events, and opens signed replies. */
@Injectable()
export class MessageBus {
  constructor(
    private readonly nats: NatsService,
    @Inject(MESSAGING_OPTIONS) private readonly opts: MessagingOptions,
  ) {}

  seal<T>(fields: EnvelopeFields<T>): Envelope<T> {
    return sealEnvelope(this.opts.identity, fields);
  }

  /** Request/reply on core NATS; returns the validated result or throws the typed error replied. */
  async request<S extends z.ZodType>(
    subject: string,
    data: unknown,
    resultSchema: S,
    o: RequestOptions = {},
  ): Promise<z.infer<S>> {
    const env = this.seal({
      type: subject,
      data,
      idempotencykey: o.idempotencyKey,
      correlationid: o.correlationId,
      causationid: o.causationId,
    });
    let bytes: Uint8Array;
    try {
      const msg = await this.nats.nc.request(subject, encodeEnvelope(env), {
        timeout: o.timeoutMs ?? this.opts.requestTimeoutMs,
      });
      bytes = msg.data;
    } catch (err) {
      throw requestFailure(subject, err);
    }
    const reply = openEnvelope(bytes, this.opts.trust, ReplySchema);
    if (!reply.data.ok) throw CcmError.fromPayload(reply.data.error);
    const result = resultSchema.safeParse(reply.data.result);
    if (!result.success)
      throw validationError(`reply from ${reply.source} on ${subject}`, result.error.issues);
    return result.data;
  }

  /**
   * Publishes a signed event or intake request straight to JetStream, deduplicated by envelope id.
   * Services with a database write events through the outbox instead, in their state transaction.
   */
  async publish<T>(subject: string, fields: EnvelopeFields<T>): Promise<Envelope<T>> {
    const env = this.seal(fields);
    await this.nats.js.publish(subject, encodeEnvelope(env), { msgID: env.id });
    return env;
  }
}
