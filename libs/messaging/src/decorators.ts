import { SetMetadata } from '@nestjs/common';
import { type Envelope, type SignerName, type StreamKey } from '@ccm/contracts';
import { type EntityManager } from 'typeorm';
import { type z } from 'zod';

export const REQUEST_HANDLER = Symbol.for('ccm.messaging.request-handler');
export const JETSTREAM_CONSUMER = Symbol.for('ccm.messaging.jetstream-consumer');

/** What a handler learns about the message besides its validated payload. */
export interface MessageContext {
  subject: string;
  envelope: Envelope;
  /** The message's bytes as received: the envelope exactly as signed (what a hash chain commits to). */
  raw?: Uint8Array;
  /** Inside an idempotent handler: the transaction that also records the inbox row and the reply. */
  manager?: EntityManager;
  /** JetStream consumers: how many times this message has been delivered (1 on first delivery). */
  deliveryCount?: number;
  /** JetStream consumers: the message's sequence in its stream (publish order). */
  streamSeq?: number;
}

export interface RequestHandlerOptions {
  /** The subject, or a function of the provider instance (e.g. a host-agent's own host id). */
  subject: string | ((self: object) => string);
  schema: z.ZodType;
  /**
   * Deduplicate by the envelope's idempotency key in the inbox table: the handler runs in a transaction
   * (`ctx.manager`) and the same key always gets the first reply. Needs a database.
   */
  idempotent?: boolean;
  /** Only these signers may send it; anyone else gets UNAUTHORIZED. Default: any trusted signer. */
  allow?: readonly SignerName[];
}

/** Marks a method as the handler of core-NATS requests on a subject, in the service's queue group. */
export const OnRequest = (opts: RequestHandlerOptions): MethodDecorator => SetMetadata(REQUEST_HANDLER, opts);

/** How a JetStream handler says what happened to a message (golevelup-style explicit outcomes). */
export type Outcome = { kind: 'ack' } | { kind: 'nak'; delayMs: number } | { kind: 'term'; reason: string };
export const ack = (): Outcome => ({ kind: 'ack' });
export const nak = (delayMs: number): Outcome => ({ kind: 'nak', delayMs });
export const term = (reason: string): Outcome => ({ kind: 'term', reason });

export interface ConsumerOptions {
  stream: StreamKey;
  /** Durable consumer name, shared by every replica of the service. */
  durable: string;
  filterSubject: string;
  schema: z.ZodType;
  allow?: readonly SignerName[];
  /** The envelope types this consumer takes; anything else is parked as MISADDRESSED. Default: any. */
  types?: readonly string[];
  /** Deliveries before the message is parked on the dead-letter subject; default from config. */
  maxDeliver?: number;
  /** How long the server waits for an ack before redelivering. */
  ackWaitMs?: number;
  /** Messages handled at once by one replica. */
  concurrency?: number;
}

/**
 * A consumer's options, or a function of the provider instance that gives them (e.g. a durable named
 * after a host-agent's own host id) or `undefined` when this instance runs no such consumer.
 */
export type JetStreamHandlerOptions = ConsumerOptions | ((self: object) => ConsumerOptions | undefined);

/** Marks a method as the handler of a durable JetStream pull consumer; it returns an {@link Outcome}. */
export const OnJetStream = (opts: JetStreamHandlerOptions): MethodDecorator =>
  SetMetadata(JETSTREAM_CONSUMER, opts);
