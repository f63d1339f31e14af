import { readFile, writeFile } from 'node:fs/promises';
import { isCcmError } from '@ccm/contracts';
import { TrustStore } from '@ccm/keys';
import {
  auditEvents,
  buildTimeline,
  exportTranscript,
  verifyTranscript,
  type MigrationRecord,
  type StoredEvent,
} from '@ccm/messaging';
import { type Connection } from '../context.js';
import { CliError, ExitCode, usageError } from '../errors.js';
import { type CliIo } from '../io.js';
import { readEvents } from './read-events.js';
import { findingLine, renderTimeline } from './render.js';

export interface AuditFlags {
  json: boolean;
  timeoutMs: number;
  since?: string;
  out?: string;
  trust?: string;
  /** Accept records whose only flaw is events aged out of CCM_EVENTS (still printed). */
  allowAgedOut?: boolean;
}

export const AUDIT_SUBCOMMANDS = ['replay', 'verify', 'export', 'verify-file'] as const;

/**
 * Whether a record fails the audit: broken always; incomplete (events aged out of the stream by its
 * retention) unless `--allow-aged-out`, so a gap is never a silent pass.
 */
const failsWith = (f: AuditFlags) => (r: MigrationRecord) =>
  r.verdict === 'broken' || (r.verdict === 'incomplete' && !f.allowAgedOut);

/** `--since`: an ISO time, or an age such as `30m`, `12h`, `7d`. */
export function parseSince(v: string, now = Date.now()): number {
  const age = /^(\d+)(s|m|h|d)$/.exec(v);
  if (age) return now - Number(age[1]) * { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[age[2] as 's'];
  const t = Date.parse(v);
  if (!Number.isFinite(t) || !/^\d{4}-\d\d-\d\d/.test(v))
    throw usageError(
      `--since ${JSON.stringify(v)} must be an ISO time (2026-12-05T08:00:00Z) or an age (30m, 12h, 7d)`,
    );
  return t;
}

async function records(conn: Connection, timeoutMs: number) {
  const { events, stream } = await readEvents(conn, timeoutMs);
  return {
    events,
    stream,
    records: auditEvents(events, { trust: conn.trust, streamFirstSeq: stream.firstSeq }),
  };
}

function one(all: Map<string, MigrationRecord>, id: string | undefined): MigrationRecord {
  if (!id) throw usageError('name the migration: ccm audit replay <migration-id>');
  const r = all.get(id);
  if (!r)
    throw new CliError(
      ExitCode.Refused,
      'NOT_FOUND',
      `CCM_EVENTS holds no event of ${id}`,
      'check the id; `ccm migrations` lists them',
    );
  return r;
}

/** `ccm audit replay <id>`: the migration's timeline and the verdict on every event, from the stream alone. */
export async function replayCommand(
  conn: Connection,
  id: string | undefined,
  f: AuditFlags,
  io: CliIo,
): Promise<number> {
  const r = one((await records(conn, f.timeoutMs)).records, id);
  const t = buildTimeline(r);
  io.out(f.json ? `${JSON.stringify(t)}\n` : renderTimeline(t));
  return failsWith(f)(r) ? ExitCode.AuditFailed : ExitCode.Ok;
}

/** `ccm audit verify [--since T]`: every migration with events since T; names the first broken record. */
export async function verifyCommand(conn: Connection, f: AuditFlags, io: CliIo): Promise<number> {
  const since = f.since ? parseSince(f.since) : undefined;
  const { events, records: all } = await records(conn, f.timeoutMs);
  const storedAt = new Map(events.map((e) => [e.streamSeq, e.storedAt]));
  const latest = (r: MigrationRecord) =>
    Math.max(
      ...[
        ...r.events.map((e) => e.streamSeq),
        ...r.findings.flatMap((x) => (x.streamSeq ? [x.streamSeq] : [])),
      ].map((s) => Date.parse(storedAt.get(s) ?? '') || 0),
    );
  const picked = [...all.values()].filter((r) => since === undefined || latest(r) >= since);
  const broken = picked.filter(failsWith(f));
  const firstBroken = broken
    .flatMap((r) => r.findings.map((x) => ({ migrationId: r.migrationId, ...x })))
    .sort((a, b) => (a.streamSeq ?? 0) - (b.streamSeq ?? 0))[0];
  if (f.json) {
    const migrations = picked.map((r) => ({
      migrationId: r.migrationId,
      verdict: r.verdict,
      events: r.events.length,
      chains: r.chains.length,
      findings: r.findings,
    }));
    io.out(
      `${JSON.stringify({ checked: picked.length, broken: broken.length, events: events.length, firstBroken, migrations })}\n`,
    );
  } else {
    for (const r of picked) {
      io.out(
        `${r.migrationId}  ${r.verdict.padEnd(10)} ${r.events.length} events, ${r.chains.length} chains\n`,
      );
      for (const x of r.findings) io.out(`    ${findingLine(x)}\n`);
    }
    io.out(
      `checked ${picked.length} migrations (${events.length} events in the stream): ${broken.length} broken or incomplete${
        f.allowAgedOut
          ? ` (aged-out gaps allowed: ${picked.filter((r) => r.verdict === 'incomplete').length} incomplete)`
          : ''
      }\n`,
    );
  }
  if (!firstBroken) return ExitCode.Ok;
  io.err(`ccm: first broken record: ${findingLine(firstBroken, firstBroken.migrationId)}\n`);
  return ExitCode.AuditFailed;
}

/** `ccm audit export <id> [--out FILE]`: one signed JSON transcript for offline verification. */
export async function exportCommand(
  conn: Connection,
  id: string | undefined,
  f: AuditFlags,
  io: CliIo,
): Promise<number> {
  const { events, stream, records: all } = await records(conn, f.timeoutMs);
  const r = one(all, id);
  const seqs = new Set([
    ...r.events.map((e) => e.streamSeq),
    ...r.findings.flatMap((x) => (x.streamSeq ? [x.streamSeq] : [])),
  ]);
  const mine: StoredEvent[] = events.filter((e) => seqs.has(e.streamSeq));
  const transcript = exportTranscript(r.migrationId, mine, stream, conn.trust, conn.identity);
  const file = f.out ?? `${r.migrationId}.audit.json`;
  await writeFile(file, `${JSON.stringify(transcript, null, 2)}\n`);
  io.out(
    f.json
      ? `${JSON.stringify({ file, events: mine.length, verdict: r.verdict })}\n`
      : `wrote ${file}: ${mine.length} events, record ${r.verdict}\n`,
  );
  return failsWith(f)(r) ? ExitCode.AuditFailed : ExitCode.Ok;
}

async function readTrust(path: string): Promise<TrustStore> {
  try {
    const raw = JSON.parse(await readFile(path, 'utf8')) as {
      signers?: Record<string, string>;
      scopes?: Record<string, string>;
    };
    if (!raw.signers) throw new Error('no "signers" in it');
    return new TrustStore(raw.signers, raw.scopes ?? {});
  } catch (err) {
    throw usageError(
      `--trust ${path}: not a trust.json (${(err as Error).message})`,
      'pass the trust.json made by ccm-keys',
    );
  }
}

/** `ccm audit verify-file FILE [--trust trust.json]`: checks a transcript with no access to NATS. */
export async function verifyFileCommand(file: string | undefined, f: AuditFlags, io: CliIo): Promise<number> {
  if (!file) throw usageError('name the transcript: ccm audit verify-file FILE [--trust trust.json]');
  const text = await readFile(file, 'utf8').catch((err: Error) => {
    throw new CliError(ExitCode.Usage, 'NO_FILE', `cannot read ${file}: ${err.message}`);
  });
  const pinned = f.trust ? await readTrust(f.trust) : undefined;
  let check;
  try {
    check = verifyTranscript(text, pinned);
  } catch (err) {
    if (!isCcmError(err)) throw err;
    io.err(
      f.json
        ? `${JSON.stringify({ error: { code: err.code, message: err.message } })}\n`
        : `ccm: ${file}: ${err.message} [${err.code}]\n`,
    );
    return ExitCode.AuditFailed;
  }
  const ok =
    check.transcriptSignature === 'valid' && check.keyMismatches.length === 0 && !failsWith(f)(check.record);
  const trustNote = check.pinned
    ? check.keyMismatches.length
      ? `keys NOT as in ${f.trust}: ${check.keyMismatches.join('; ')}`
      : `every key is in ${f.trust} as the same signer`
    : 'NOT PINNED: the public keys come from the file itself, which proves the record is consistent, not who wrote it; pass --trust trust.json';
  if (f.json) {
    const { record, ...rest } = check;
    io.out(`${JSON.stringify({ ...rest, ok, trustNote, timeline: buildTimeline(record) })}\n`);
  } else {
    io.out(
      `transcript ${file}: exported by ${check.exportedBy}, its signature ${check.transcriptSignature}\n${trustNote}\n`,
    );
    io.out(renderTimeline(buildTimeline(check.record)));
  }
  return ok ? ExitCode.Ok : ExitCode.AuditFailed;
}
