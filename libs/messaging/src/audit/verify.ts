import {
  EVENT_AGGREGATES,
  EnvelopeSchema,
  eventHash,
  isCcmError,
  isServiceName,
  parseChainId,
  publisherSigner,
  type Envelope,
} from '@ccm/contracts';
import { type TrustStore } from '@ccm/keys';
import { verifyEnvelope } from '../envelope-codec.js';
import { checkChains } from './chains.js';
import {
  type AuditedEvent,
  type AuditOptions,
  type Finding,
  type MigrationRecord,
  type StoredEvent,
  type Verdict,
} from './types.js';

const decoder = new TextDecoder();

/** The migration a stored message is about: its correlationid, else the id token of its subject. */
function migrationOf(env: Partial<Envelope> | undefined, subject: string): string | undefined {
  if (typeof env?.correlationid === 'string') return env.correlationid;
  const token = subject.split('.')[3];
  return token?.startsWith('mig-') ? token : undefined;
}

/** May `signer` publish on `subject`? Only events of the aggregates it owns (EVENT_AGGREGATES). */
export function mayPublish(signer: string, subject: string): boolean {
  const [root, kind, aggregate, owner] = subject.split('.');
  if (root !== 'ccm' || kind !== 'evt' || !aggregate || !isServiceName(signer)) return false;
  if (aggregate === 'service') return owner === signer;
  return EVENT_AGGREGATES[signer].includes(aggregate);
}

/** Checks one message: shape, signature, signer's entitlement. Returns the envelope or a finding. */
function checkEvent(m: StoredEvent, trust: TrustStore): { env?: Envelope; finding?: Finding; id?: string } {
  const at = { streamSeq: m.streamSeq, subject: m.subject };
  let raw: unknown;
  try {
    raw = JSON.parse(typeof m.data === 'string' ? m.data : decoder.decode(m.data));
  } catch {
    return {
      id: migrationOf(undefined, m.subject),
      finding: { kind: 'malformed', reason: 'not valid JSON (altered bytes?)', ...at },
    };
  }
  const shape = EnvelopeSchema.safeParse(raw);
  const env = raw as Envelope;
  if (!shape.success) {
    const issue = shape.error.issues[0];
    return {
      id: migrationOf(env, m.subject),
      finding: {
        kind: 'malformed',
        reason: `not a CCM envelope: ${issue?.path.join('.')} ${issue?.message}`,
        ...at,
      },
    };
  }
  const id = migrationOf(env, m.subject);
  const ref = { ...at, eventId: env.id, chainId: env.chainid, chainSeq: env.chainseq };
  try {
    verifyEnvelope(env, trust);
  } catch (err) {
    const reason = isCcmError(err) ? `${err.code}: ${err.message}` : (err as Error).message;
    return { id, env, finding: { kind: 'signature', reason, ...ref } };
  }
  if (!mayPublish(env.source, m.subject)) {
    const reason = `${env.source} signed ${m.subject}, but may publish only ${
      isServiceName(env.source) ? EVENT_AGGREGATES[env.source].join(', ') : 'no'
    } events`;
    return { id, env, finding: { kind: 'unauthorized-publisher', reason, ...ref } };
  }
  if (env.chainid) {
    const chain = parseChainId(env.chainid);
    const scope = env.signerkey ? trust.lookup(env.signerkey)?.scope : undefined;
    const publisher = chain?.publisher ?? '';
    if (!chain || chain.correlationId !== env.correlationid || publisherSigner(publisher) !== env.source) {
      const reason = `chain ${env.chainid} is not ${env.source}'s chain for ${env.correlationid ?? 'no migration'}`;
      return { id, env, finding: { kind: 'unauthorized-publisher', reason, ...ref } };
    }
    if (scope && !publisher.startsWith(`${env.source}@${scope}`)) {
      const reason = `the key of ${env.source}@${scope} signed an event of chain ${env.chainid}`;
      return { id, env, finding: { kind: 'unauthorized-publisher', reason, ...ref } };
    }
  }
  return { id, env };
}

/**
 * Audits events read from CCM_EVENTS (any order, any mix of migrations): every signature against the
 * trust store, every publisher's entitlement, every chain link, gaps, duplicates, forks, reordering
 * and the coordinator's cross-links. Events about no migration are ignored.
 */
export function auditEvents(stored: Iterable<StoredEvent>, opts: AuditOptions): Map<string, MigrationRecord> {
  const byMigration = new Map<string, { events: AuditedEvent[]; findings: Finding[] }>();
  const bucket = (id: string) => {
    let b = byMigration.get(id);
    if (!b) byMigration.set(id, (b = { events: [], findings: [] }));
    return b;
  };
  for (const m of stored) {
    const { env, finding, id } = checkEvent(m, opts.trust);
    if (!id) continue;
    const b = bucket(id);
    if (finding) b.findings.push(finding);
    if (!env || finding) continue;
    if (!env.chainid) {
      b.findings.push({
        kind: 'unchained',
        reason: `event of ${env.source} about ${id} carries no chain link`,
        streamSeq: m.streamSeq,
        subject: m.subject,
        eventId: env.id,
      });
      continue;
    }
    const ev = {
      streamSeq: m.streamSeq,
      subject: m.subject,
      env,
      hash: eventHash(env),
      signatureOk: true,
      linkOk: true,
    };
    b.events.push(m.storedAt ? { ...ev, storedAt: m.storedAt } : ev);
  }
  const out = new Map<string, MigrationRecord>();
  for (const [migrationId, b] of byMigration) {
    b.events.sort((x, y) => x.streamSeq - y.streamSeq);
    const { chains, findings } = checkChains(migrationId, b.events, opts);
    const all = [...b.findings, ...findings].sort((x, y) => (x.streamSeq ?? 0) - (y.streamSeq ?? 0));
    const ended = b.events.some(
      (e) => e.env.source === 'saga-coordinator' && /\.(finished|rejected)$/.test(e.subject),
    );
    const verdict: Verdict = all.length
      ? all.every((f) => f.kind === 'aged-out')
        ? 'incomplete'
        : 'broken'
      : ended
        ? 'intact'
        : 'open';
    out.set(migrationId, { migrationId, events: b.events, chains, findings: all, ended, verdict });
  }
  return out;
}
