import { randomUUID, sign, verify } from 'node:crypto';
import {
  canonicalJson,
  CcmError,
  EnvelopeSchema,
  ErrorCodes,
  SIGNING_CONTEXT,
  SPEC_VERSION,
  validationError,
  type ChainAttributes,
  type ChainLink,
  type Envelope,
} from '@ccm/contracts';
import { type z } from 'zod';
import { type Identity, type TrustStore } from '@ccm/keys';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface EnvelopeFields<T> {
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

function signingBytes(env: Omit<Envelope, 'signature'>): Buffer {
  return Buffer.from(SIGNING_CONTEXT + canonicalJson({ ...env, signature: undefined }), 'utf8');
}

function chainAttributes<T>(f: EnvelopeFields<T>): ChainAttributes {
  if (!f.chain?.chainid) return {};
  const links = f.chainLinks && Object.keys(f.chainLinks).length ? { chainlinks: f.chainLinks } : {};
  return { chainid: f.chain.chainid, chainseq: f.chain.chainseq, chainprev: f.chain.chainprev, ...links };
}

/** Builds and signs an envelope with the identity's Ed25519 key. */
export function sealEnvelope<T>(identity: Identity, f: EnvelopeFields<T>): Envelope<T> {
  const unsigned = {
    specversion: SPEC_VERSION,
    id: f.id ?? randomUUID(),
    source: identity.name,
    type: f.type,
    time: (f.time ?? new Date()).toISOString(),
    datacontenttype: 'application/json' as const,
    ...(f.subject !== undefined ? { subject: f.subject } : {}),
    ...(f.correlationid !== undefined ? { correlationid: f.correlationid } : {}),
    ...(f.causationid !== undefined ? { causationid: f.causationid } : {}),
    ...(f.idempotencykey !== undefined ? { idempotencykey: f.idempotencykey } : {}),
    data: f.data,
    ...chainAttributes(f),
    signerkey: identity.keyId,
  };
  const signature = sign(null, signingBytes(unsigned), identity.signingKey).toString('base64');
  return { ...unsigned, signature };
}

export function encodeEnvelope(env: Envelope): Uint8Array {
  return encoder.encode(JSON.stringify(env));
}

/**
 * Decodes, checks the envelope's shape, verifies its signature against the trust store (the key must
 * belong to the claimed `source`) and validates `data` with `schema`. Throws a typed CcmError:
 * MALFORMED_MESSAGE, VALIDATION_FAILED, SIGNATURE_MISSING, UNKNOWN_SIGNER or SIGNATURE_INVALID.
 */
export function openEnvelope<S extends z.ZodType>(
  bytes: Uint8Array,
  trust: TrustStore,
  schema: S,
): Envelope<z.infer<S>> {
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(bytes));
  } catch (cause) {
    throw new CcmError(ErrorCodes.MalformedMessage, 'message is not valid JSON', { retryable: false, cause });
  }
  const shape = EnvelopeSchema.safeParse(raw);
  if (!shape.success) throw validationError('envelope', shape.error.issues);
  const env = shape.data as Envelope;
  verifyEnvelope(env, trust);
  const data = schema.safeParse(env.data);
  if (!data.success) throw validationError(`${env.type} payload`, data.error.issues);
  return { ...env, data: data.data };
}

/** Verifies an already-parsed envelope's signature and signer; throws a typed CcmError. */
export function verifyEnvelope(env: Envelope, trust: TrustStore): void {
  if (!env.signature || !env.signerkey) {
    throw new CcmError(ErrorCodes.SignatureMissing, `envelope ${env.id} from ${env.source} is not signed`, {
      retryable: false,
    });
  }
  const known = trust.lookup(env.signerkey);
  if (!known) {
    throw new CcmError(
      ErrorCodes.UnknownSigner,
      `envelope ${env.id} is signed by a key this service does not trust`,
      {
        retryable: false,
        details: { signerkey: env.signerkey },
      },
    );
  }
  if (known.signer !== env.source) {
    throw new CcmError(
      ErrorCodes.SignatureInvalid,
      `envelope ${env.id} claims source ${env.source} but is signed by ${known.signer}`,
      {
        retryable: false,
      },
    );
  }
  const ok = verify(null, signingBytes(env), known.key, Buffer.from(env.signature, 'base64'));
  if (!ok) {
    throw new CcmError(
      ErrorCodes.SignatureInvalid,
      `signature of envelope ${env.id} from ${env.source} does not verify`,
      {
        retryable: false,
      },
    );
  }
}
