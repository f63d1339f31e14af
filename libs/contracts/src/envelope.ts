import { z } from 'zod';
import { ChainAttributesSchema } from './chain.js';
import { ErrorPayloadSchema } from './errors.js';

/** CloudEvents spec version of every CCM envelope. */
export const SPEC_VERSION = '1.0' as const;

/**
 * Domain separation prefix: what a CCM key signs can never be mistaken for other signed data. Version 2
 * envelopes carry `natssubject` (the NATS subject they are addressed to) under the signature.
 */
export const SIGNING_CONTEXT = 'ccm-envelope-v2\n';
/**
 * The prefix of version 1 envelopes (before `natssubject`): bound to no subject, so live receivers
 * refuse them; only readers of history (`ccm migrate --follow`) still verify them.
 */
export const SIGNING_CONTEXT_V1 = 'ccm-envelope-v1\n';

/**
 * The envelope around every message on NATS: CloudEvents attribute names (specversion, id, source,
 * type, time, subject, datacontenttype, data) plus CCM's extensions: natssubject (the NATS subject it is addressed to), correlationid (the migration id),
 * causationid (the id of the message that caused this one), idempotencykey, and the Ed25519
 * signature of the sending identity (`signerkey` names the key, `signature` is over everything else).
 */
export const EnvelopeSchema = z.object({
  specversion: z.literal(SPEC_VERSION),
  id: z.string().min(1).max(200),
  /** The signing identity: a service name or `operator`. Must match the key's owner in the trust store. */
  source: z.string().min(1).max(100),
  type: z.string().min(1).max(200),
  time: z.iso.datetime({ offset: true }),
  subject: z.string().max(500).optional(),
  /** The NATS subject the envelope is addressed to (signed): a receiver refuses it on any other. */
  natssubject: z.string().min(1).max(500).optional(),
  datacontenttype: z.literal('application/json').optional(),
  correlationid: z.string().max(200).optional(),
  causationid: z.string().max(200).optional(),
  idempotencykey: z.string().min(1).max(300).optional(),
  data: z.unknown(),
  signerkey: z.string().max(100).optional(),
  signature: z.string().max(200).optional(),
  /** The per-migration hash chain (chain.ts): signed like every other attribute. */
  ...ChainAttributesSchema.shape,
});

export type Envelope<T = unknown> = Omit<z.infer<typeof EnvelopeSchema>, 'data'> & { data: T };

/** An envelope before signing. */
export type UnsignedEnvelope<T = unknown> = Omit<Envelope<T>, 'signerkey' | 'signature'>;

/** The data of every reply: a result or a typed error, never both. */
export const ReplySchema = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), result: z.unknown() }),
  z.object({ ok: z.literal(false), error: ErrorPayloadSchema }),
]);
export type Reply<T = unknown> =
  { ok: true; result: T } | { ok: false; error: z.infer<typeof ErrorPayloadSchema> };
