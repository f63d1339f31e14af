import { sign, verify } from 'node:crypto';
import { canonicalJson, CcmError, ErrorCodes, type Envelope } from '@ccm/contracts';
import { TrustStore, type Identity } from '@ccm/keys';
import { z } from 'zod';
import { type MigrationRecord, type StoredEvent } from './types.js';
import { auditEvents } from './verify.js';

/** The format tag of an exported transcript; also its signature's domain separation. */
export const TRANSCRIPT_FORMAT = 'ccm-audit-transcript-v1';

const KeySchema = z.object({ signer: z.string(), scope: z.string().optional() });
export const TranscriptSchema = z.object({
  format: z.literal(TRANSCRIPT_FORMAT),
  migrationId: z.string(),
  exportedAt: z.string(),
  exportedBy: z.string(),
  stream: z.object({ name: z.string(), firstSeq: z.number().int(), lastSeq: z.number().int() }),
  /** Each event as stored: the envelope (or, when it is not JSON, the raw text) and its place. */
  events: z.array(
    z.object({
      streamSeq: z.number().int(),
      subject: z.string(),
      storedAt: z.string().optional(),
      envelope: z.unknown().optional(),
      raw: z.string().optional(),
    }),
  ),
  /** The public signing keys (key id = base64url raw Ed25519 key) and whose they are. */
  keys: z.record(z.string(), KeySchema),
  signerkey: z.string(),
  signature: z.string(),
});
export type Transcript = z.infer<typeof TranscriptSchema>;

const signingBytes = (t: Omit<Transcript, 'signature'>): Buffer =>
  Buffer.from(`${TRANSCRIPT_FORMAT}\n${canonicalJson({ ...t, signature: undefined })}`, 'utf8');

/**
 * One signed document holding a migration's events as CCM_EVENTS stored them, the public keys that
 * signed them (from the exporter's trust store) and the exporter's own signature over all of it.
 */
export function exportTranscript(
  migrationId: string,
  stored: StoredEvent[],
  stream: Transcript['stream'],
  trust: TrustStore,
  exporter: Identity,
  now = new Date(),
): Transcript {
  const keys: Transcript['keys'] = {};
  const addKey = (keyId: unknown) => {
    const k = typeof keyId === 'string' ? trust.lookup(keyId) : undefined;
    if (k && typeof keyId === 'string')
      keys[keyId] = { signer: k.signer, ...(k.scope ? { scope: k.scope } : {}) };
  };
  addKey(exporter.keyId);
  const events = stored.map((m) => {
    const text = typeof m.data === 'string' ? m.data : new TextDecoder().decode(m.data);
    const base = {
      streamSeq: m.streamSeq,
      subject: m.subject,
      ...(m.storedAt ? { storedAt: m.storedAt } : {}),
    };
    try {
      const envelope = JSON.parse(text) as Partial<Envelope> & {
        data?: { request?: { signerkey?: string } };
      };
      addKey(envelope.signerkey);
      addKey(envelope.data?.request?.signerkey);
      return { ...base, envelope };
    } catch {
      return { ...base, raw: text };
    }
  });
  const unsigned = {
    format: TRANSCRIPT_FORMAT,
    migrationId,
    exportedAt: now.toISOString(),
    exportedBy: exporter.name,
    stream,
    events,
    keys,
    signerkey: exporter.keyId,
  } as const;
  return {
    ...unsigned,
    signature: sign(null, signingBytes(unsigned), exporter.signingKey).toString('base64'),
  };
}

export interface TranscriptCheck {
  migrationId: string;
  /** The exporter's signature over the whole document. */
  transcriptSignature: 'valid' | 'invalid';
  exportedBy: string;
  /** Keys were checked against a trust store the auditor holds (else only against the file itself). */
  pinned: boolean;
  /** Embedded keys the pinned trust store does not know, or knows as someone else. */
  keyMismatches: string[];
  record: MigrationRecord;
}

/**
 * Verifies a transcript offline. With `pinned` (the auditor's trust.json) every embedded key must be
 * in it as the same signer, and signatures are checked against it; without, only against the keys
 * the file carries, which proves the record is consistent, not who made it.
 */
export function verifyTranscript(text: string, pinned?: TrustStore): TranscriptCheck {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new CcmError(ErrorCodes.MalformedMessage, 'the transcript is not valid JSON', {
      retryable: false,
      cause,
    });
  }
  const shape = TranscriptSchema.safeParse(parsed);
  if (!shape.success) {
    const issue = shape.error.issues[0];
    throw new CcmError(
      ErrorCodes.ValidationFailed,
      `not a CCM audit transcript: ${issue?.path.join('.')} ${issue?.message}`,
      { retryable: false },
    );
  }
  const t = shape.data;
  const embedded = new TrustStore(
    Object.fromEntries(Object.entries(t.keys).map(([id, k]) => [id, k.signer])),
    Object.fromEntries(Object.entries(t.keys).flatMap(([id, k]) => (k.scope ? [[id, k.scope]] : []))),
  );
  const keyMismatches = pinned
    ? Object.entries(t.keys).flatMap(([id, k]) => {
        const p = pinned.lookup(id);
        if (!p) return [`${id} (${k.signer}) is not in the trust store`];
        return p.signer !== k.signer || (p.scope ?? '') !== (k.scope ?? '')
          ? [`${id} is ${p.signer} in the trust store, not ${k.signer}`]
          : [];
      })
    : [];
  const trust = pinned ?? embedded;
  const exporterKey = trust.lookup(t.signerkey);
  let transcriptSignature: 'valid' | 'invalid' = 'invalid';
  try {
    if (exporterKey && exporterKey.signer === t.exportedBy) {
      const { signature, ...rest } = t;
      if (verify(null, signingBytes(rest), exporterKey.key, Buffer.from(signature, 'base64')))
        transcriptSignature = 'valid';
    }
  } catch {
    // a signature that is not even well-formed: invalid
  }
  const stored: StoredEvent[] = t.events.map((e) => ({
    streamSeq: e.streamSeq,
    subject: e.subject,
    data: e.raw ?? JSON.stringify(e.envelope),
    ...(e.storedAt ? { storedAt: e.storedAt } : {}),
  }));
  const record = auditEvents(stored, { trust, streamFirstSeq: t.stream.firstSeq }).get(t.migrationId) ?? {
    migrationId: t.migrationId,
    events: [],
    chains: [],
    findings: [{ kind: 'missing', reason: 'the transcript holds no event of its migration' }],
    ended: false,
    verdict: 'broken',
  };
  return {
    migrationId: t.migrationId,
    transcriptSignature,
    exportedBy: t.exportedBy,
    pinned: !!pinned,
    keyMismatches,
    record,
  };
}
