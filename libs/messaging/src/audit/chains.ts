import {
  defaultGenesis,
  eventHash,
  EnvelopeSchema,
  isCcmError,
  migrationIdFor,
  OPERATOR,
  parseChainId,
  type Envelope,
} from '@ccm/contracts';
import { verifyEnvelope } from '../envelope-codec.js';
import { type AuditedEvent, type AuditOptions, type ChainSummary, type Finding } from './types.js';

const COORDINATOR = 'saga-coordinator';

const refOf = (e: AuditedEvent) => ({
  streamSeq: e.streamSeq,
  subject: e.subject,
  eventId: e.env.id,
  chainId: e.env.chainid,
  chainSeq: e.env.chainseq,
});

/**
 * What the first event of a chain must commit to. The coordinator's chain starts from the operator's
 * signed request, which its `requested` event carries: it must verify, be the operator's, and name
 * this migration (the id derives from its idempotency key). Other chains start from their own id.
 */
function checkGenesis(migrationId: string, first: AuditedEvent, opts: AuditOptions): string | undefined {
  const chainId = first.env.chainid ?? '';
  if (parseChainId(chainId)?.publisher !== COORDINATOR) {
    return first.env.chainprev === defaultGenesis(chainId)
      ? undefined
      : 'seq 1 does not start from the chain genesis';
  }
  const request = (first.env.data as { request?: unknown } | undefined)?.request;
  if (!first.subject.endsWith('.requested') || !request)
    return 'the chain does not start with the signed request';
  const shape = EnvelopeSchema.safeParse(request);
  if (!shape.success) return 'the request it starts from is not an envelope';
  const req = request as Envelope;
  try {
    verifyEnvelope(req, opts.trust);
  } catch (err) {
    return `the request's signature fails: ${isCcmError(err) ? err.message : String(err)}`;
  }
  if (req.source !== OPERATOR) return `the request is signed by ${req.source}, not an operator`;
  if (migrationIdFor(req.idempotencykey ?? req.id) !== migrationId)
    return 'the request names another migration';
  if (first.env.chainprev !== eventHash(request)) return 'seq 1 does not commit to the request it carries';
  return undefined;
}

/** Checks each chain of one migration and the coordinator's cross-links into the others. */
export function checkChains(
  migrationId: string,
  events: AuditedEvent[],
  opts: AuditOptions,
): { chains: ChainSummary[]; findings: Finding[] } {
  const findings: Finding[] = [];
  const chains = new Map<string, AuditedEvent[]>();
  for (const e of events) {
    const id = e.env.chainid ?? '';
    chains.set(id, [...(chains.get(id) ?? []), e]);
  }
  const truncated = (opts.streamFirstSeq ?? 1) > 1;
  const summaries: ChainSummary[] = [];
  const bySeq = new Map<string, Map<number, AuditedEvent>>();
  for (const [chainId, inStream] of chains) {
    // Stream order must follow chain order: each publisher sends its chain in order.
    let maxSeq = 0;
    for (const e of inStream) {
      const seq = e.env.chainseq ?? 0;
      if (seq < maxSeq) {
        findings.push({
          kind: 'reordered',
          reason: `seq ${seq} stored after seq ${maxSeq} of its chain`,
          ...refOf(e),
        });
      }
      maxSeq = Math.max(maxSeq, seq);
    }
    const sorted = [...inStream].sort(
      (a, b) => (a.env.chainseq ?? 0) - (b.env.chainseq ?? 0) || a.streamSeq - b.streamSeq,
    );
    const seen = new Map<number, AuditedEvent>();
    let prev: AuditedEvent | undefined;
    for (const e of sorted) {
      const seq = e.env.chainseq ?? 0;
      const twin = seen.get(seq);
      if (twin) {
        const same = twin.hash === e.hash;
        e.linkOk = false;
        findings.push({
          kind: same ? 'duplicate' : 'fork',
          reason: same
            ? `the same event as stream #${twin.streamSeq} again`
            : `a second, different event with seq ${seq} (the first is stream #${twin.streamSeq})`,
          ...refOf(e),
        });
        continue;
      }
      seen.set(seq, e);
      const expected = prev ? (prev.env.chainseq ?? 0) + 1 : 1;
      if (seq > expected) {
        const agedOut = truncated && !prev;
        const many = seq - 1 > expected;
        const range = `${expected}${many ? `..${seq - 1}` : ''}`;
        findings.push({
          kind: agedOut ? 'aged-out' : 'missing',
          reason: agedOut
            ? `${many ? 'events' : 'event'} ${range} of chain ${chainId} ${many ? 'are' : 'is'} no longer in the stream (retention: its first stored seq is #${opts.streamFirstSeq}); not checkable`
            : `seq ${range} of the chain is missing before this event`,
          ...refOf(e),
        });
      }
      if (seq === 1) {
        const why = checkGenesis(migrationId, e, opts);
        if (why) {
          e.linkOk = false;
          findings.push({ kind: 'genesis', reason: why, ...refOf(e) });
        }
      } else if (prev && seq === expected && e.env.chainprev !== prev.hash) {
        e.linkOk = false;
        findings.push({
          kind: 'chain-link',
          reason: `does not commit to seq ${seq - 1} (stream #${prev.streamSeq}): that event was altered or replaced`,
          ...refOf(e),
        });
      }
      prev = e;
    }
    bySeq.set(chainId, seen);
    const last = sorted.at(-1)!;
    summaries.push({
      chainId,
      publisher: parseChainId(chainId)?.publisher ?? chainId,
      events: sorted.length,
      firstSeq: sorted[0]?.env.chainseq ?? 0,
      lastSeq: last.env.chainseq ?? 0,
      head: last.hash,
    });
  }
  findings.push(...crossLinks(events, bySeq, truncated ? opts.streamFirstSeq : undefined));
  return { chains: summaries, findings };
}

/** Every head the coordinator committed to must be there, unchanged. */
function crossLinks(
  events: AuditedEvent[],
  bySeq: Map<string, Map<number, AuditedEvent>>,
  streamFirstSeq: number | undefined,
): Finding[] {
  const findings: Finding[] = [];
  const reported = new Set<string>();
  for (const e of events) {
    for (const [chainId, link] of Object.entries(e.env.chainlinks ?? {})) {
      const key = `${chainId}#${link.seq}`;
      if (reported.has(key)) continue;
      const target = bySeq.get(chainId)?.get(link.seq);
      if (target?.hash === link.hash) continue;
      reported.add(key);
      // In a stream that lost its oldest messages, a head older than what is left of its chain aged out.
      const held = bySeq.get(chainId);
      if (!target && streamFirstSeq !== undefined && (!held || link.seq < Math.min(...held.keys()))) {
        findings.push({
          kind: 'aged-out',
          reason: `commits to seq ${link.seq} of ${chainId}, which is no longer in the stream (retention: its first stored seq is #${streamFirstSeq})`,
          ...refOf(e),
        });
        continue;
      }
      findings.push({
        kind: 'cross-link',
        reason: target
          ? `commits to seq ${link.seq} of ${chainId}, but that event (stream #${target.streamSeq}) differs`
          : `commits to seq ${link.seq} of ${chainId}, which is missing`,
        ...refOf(e),
      });
    }
  }
  return findings;
}
