import { randomUUID, sign, verify } from 'node:crypto';
import {
  canonicalJson,
  CcmError,
  EnvelopeSchema,
  ErrorCodes,
  parseSafeJson,
  SIGNING_CONTEXT,
  SIGNING_CONTEXT_V1,
  SPEC_VERSION,
  validationError,
  type ChainAttributes,
  type ChainLink,
  type Envelope,
} from '@ccm/contracts';
import { DEFAULT_ENVELOPE_MAX_SKEW_MS } from '@ccm/config';
import { type z } from 'zod';
import { type Identity, type TrustStore } from '@ccm/keys';

const encoder = new TextEncoder();
/** Bytes that are not UTF-8 are refused rather than turned into replacement characters. */
const decoder = new TextDecoder('utf-8', { fatal: true });

export interface EnvelopeFields<T> {
  /** The NATS subject the envelope is sent on; signed, so a receiver on any other subject refuses it. */
  natssubject: string;
  type: string;
  data: T;
  subject?: string;
  correlationid?: string;
  causationid?: string;
  idempotencykey?: string;
  id?: string;
  time?: Date;
  /** The event's place in its migration's hash chain; set by the outbox or MessageBus.publish. */
  chain?: ChainAttributes;
  /** What the first event of a new chain commits to (a request's hash); the default genesis if unset. */
  chainGenesis?: string;
  /** Heads of other chains of the migration this publisher has seen (the coordinator's cross-links). */
  chainLinks?: Record<string, ChainLink>;
}

/** What a receiver requires of an envelope besides a valid signature by a trusted signer. */
export interface EnvelopeExpectation {
  /** The NATS subject the message arrived on (a stream message: its stream subject). */
  subject: string;
  /** The types this receiver takes; omitted: any. */
  types?: readonly string[];
  /** The instant (ms since the epoch) `time` is checked against; omitted: no freshness check. */
  at?: number;
  /** How far `time` may be ahead of `at`, and by default behind it. */
  maxSkewMs?: number;
  /** How far `time` may be behind `at` (default `maxSkewMs`); `Infinity` for facts relayed late. */
  maxAgeMs?: number;
  /** Also verify version 1 envelopes, bound to no subject: only for reading what was stored before. */
  acceptV1?: boolean;
}

function signingBytes(env: Omit<Envelope, 'signature'>, context: string): Buffer {
  return Buffer.from(context + canonicalJson({ ...env, signature: undefined }), 'utf8');
}

const refuse = (code: string, message: string, details?: Record<string, unknown>) =>
  new CcmError(code, message, { retryable: false, ...(details ? { details } : {}) });

function chainAttributes<T>(f: EnvelopeFields<T>): ChainAttributes {
  if (!f.chain?.chainid) return {};
  const links = f.chainLinks && Object.keys(f.chainLinks).length ? { chainlinks: f.chainLinks } : {};
  return { chainid: f.chain.chainid, chainseq: f.chain.chainseq, chainprev: f.chain.chainprev, ...links };
}

/** Builds and signs an envelope with the identity's Ed25519 key, bound to `f.natssubject`. */
export function sealEnvelope<T>(identity: Identity, f: EnvelopeFields<T>): Envelope<T> {
  const unsigned = {
    specversion: SPEC_VERSION,
    id: f.id ?? randomUUID(),
    source: identity.name,
    type: f.type,
    time: (f.time ?? new Date()).toISOString(),
    datacontenttype: 'application/json' as const,
    natssubject: f.natssubject,
    ...(f.subject !== undefined ? { subject: f.subject } : {}),
    ...(f.correlationid !== undefined ? { correlationid: f.correlationid } : {}),
    ...(f.causationid !== undefined ? { causationid: f.causationid } : {}),
    ...(f.idempotencykey !== undefined ? { idempotencykey: f.idempotencykey } : {}),
    data: f.data,
    ...chainAttributes(f),
    signerkey: identity.keyId,
  };
  const signature = sign(null, signingBytes(unsigned, SIGNING_CONTEXT), identity.signingKey).toString(
    'base64',
  );
  return { ...unsigned, signature };
}

export function encodeEnvelope(env: Envelope): Uint8Array {
  return encoder.encode(JSON.stringify(env));
}

/**
 * Decodes (bounded depth; no NUL, lone surrogates or non-finite numbers), checks the envelope's shape,
 * verifies its signature against the trust store (the key must belong to the claimed `source`), checks
 * it was addressed to `expect.subject` with an expected type and is fresh, then validates `data` with
 * `schema`. Throws a typed, non-retryable CcmError: MALFORMED_MESSAGE, VALIDATION_FAILED,
 * SIGNATURE_MISSING, UNKNOWN_SIGNER, SIGNATURE_INVALID, MISADDRESSED or STALE.
 */
export function openEnvelope<S extends z.ZodType>(
  bytes: Uint8Array,
  trust: TrustStore,
  schema: S,
  expect: EnvelopeExpectation,
): Envelope<z.infer<S>> {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    throw refuse(ErrorCodes.MalformedMessage, 'message is not UTF-8 text');
  }
  const shape = EnvelopeSchema.safeParse(parseSafeJson(text));
  if (!shape.success) throw validationError('envelope', shape.error.issues);
  const env = shape.data as Envelope;
  verifyEnvelope(env, trust, expect);
  checkAddress(env, expect);
  const data = schema.safeParse(env.data);
  if (!data.success) throw validationError(`${env.type} payload`, data.error.issues);
  return { ...env, data: data.data };
}

/** The subject, type and freshness checks of {@link openEnvelope}, on a verified envelope. */
export function checkAddress(env: Envelope, expect: EnvelopeExpectation): void {
  if (env.natssubject !== undefined && env.natssubject !== expect.subject) {
    throw refuse(
      ErrorCodes.Misaddressed,
      `envelope ${env.id} was signed for ${env.natssubject} but arrived on ${expect.subject}`,
      { natssubject: env.natssubject, subject: expect.subject },
    );
  }
  if (expect.types && !expect.types.includes(env.type)) {
    throw refuse(ErrorCodes.Misaddressed, `${expect.subject} does not take envelopes of type ${env.type}`, {
      type: env.type,
      expected: [...expect.types],
    });
  }
  if (expect.at === undefined) return;
  const skew = expect.maxSkewMs ?? DEFAULT_ENVELOPE_MAX_SKEW_MS;
  const offset = Date.parse(env.time) - expect.at;
  if (offset > skew || -offset > (expect.maxAgeMs ?? skew)) {
    throw refuse(
      ErrorCodes.Stale,
      `envelope ${env.id} is dated ${env.time}, ${Math.round(Math.abs(offset) / 1000)} s ${offset > 0 ? 'ahead of' : 'behind'} the receiver (allowed skew ${skew} ms)`,
      { time: env.time, offsetMs: offset, maxSkewMs: skew },
    );
  }
}

/**
 * Verifies an already-parsed envelope's signature and signer; throws a typed CcmError. A version 1
 * envelope (no `natssubject`) is refused unless `acceptV1`: it is bound to no subject.
 */
export function verifyEnvelope(env: Envelope, trust: TrustStore, opts: { acceptV1?: boolean } = {}): void {
  if (!env.signature || !env.signerkey) {
    throw refuse(ErrorCodes.SignatureMissing, `envelope ${env.id} from ${env.source} is not signed`);
  }
  const known = trust.lookup(env.signerkey);
  if (!known) {
    throw refuse(
      ErrorCodes.UnknownSigner,
      `envelope ${env.id} is signed by a key this service does not trust`,
      {
        signerkey: env.signerkey,
      },
    );
  }
  if (known.signer !== env.source) {
    throw refuse(
      ErrorCodes.SignatureInvalid,
      `envelope ${env.id} claims source ${env.source} but is signed by ${known.signer}`,
    );
  }
  const v1 = env.natssubject === undefined;
  if (v1 && !opts.acceptV1) {
    throw refuse(
      ErrorCodes.Misaddressed,
      `envelope ${env.id} is version 1 (${SIGNING_CONTEXT_V1.trim()}): it names no NATS subject, so it is refused`,
    );
  }
  const bytes = signingBytes(env, v1 ? SIGNING_CONTEXT_V1 : SIGNING_CONTEXT);
  if (!verify(null, bytes, known.key, Buffer.from(env.signature, 'base64'))) {
    throw refuse(
      ErrorCodes.SignatureInvalid,
      `signature of envelope ${env.id} from ${env.source} does not verify`,
    );
  }
}
