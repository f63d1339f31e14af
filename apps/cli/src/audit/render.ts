import { type Finding, type MigrationRecord, type Timeline } from '@ccm/messaging';
import { bytes, duration, totalText } from '../commands/format.js';

/** Width of the time axis, in characters. */
const AXIS = 48;

/** A bar from `from` to `to` on an axis spanning `t0`..`t1`: `|   ████     |`. */
function span(t0: number, t1: number, from: string, to: string | undefined, fill = '█'): string {
  const total = Math.max(1, t1 - t0);
  const a = Math.min(AXIS - 1, Math.floor(((Date.parse(from) - t0) / total) * AXIS));
  const b = Math.max(a + 1, Math.min(AXIS, Math.ceil((((to ? Date.parse(to) : t1) - t0) / total) * AXIS)));
  return `|${' '.repeat(a)}${fill.repeat(b - a)}${' '.repeat(AXIS - b)}|`;
}

const rel = (t0: number, at: string) => `+${duration(Date.parse(at) - t0)}`.padStart(10);

export function findingLine(f: Finding, migrationId?: string): string {
  const where = f.streamSeq !== undefined ? `#${f.streamSeq}` : '-';
  const what = f.subject ?? f.chainId ?? '';
  return `${where} ${migrationId ? `${migrationId} ` : ''}${f.kind}: ${f.reason}${what ? ` (${what})` : ''}`;
}

const VERDICT: Record<MigrationRecord['verdict'], string> = {
  intact: 'INTACT: every signature and chain link verifies, the record ends',
  open: 'OPEN: every signature and link verifies, but the record does not end (running, or its end is missing)',
  incomplete: 'INCOMPLETE: events have aged out of the stream',
  broken: 'BROKEN',
};

/** The readable timeline of `ccm audit replay`: phases and steps as bars on one time axis. */
export function renderTimeline(t: Timeline): string {
  const lines: string[] = [];
  const r = t.request;
  lines.push(
    `migration ${t.migrationId}${r ? `: ${String(r['kind'])} ${String(r['workload'])} ${String(r['sourceHost'])} → ${String(r['targetHost'])}, requested by ${String(r['requestedBy'])} at ${r.at}` : ''}`,
  );
  if (t.outcome) {
    lines.push(
      `outcome: ${t.outcome.phase} (${t.outcome.reason})${t.durationMs !== undefined ? ` after ${duration(t.durationMs)}` : ''}`,
    );
  }
  lines.push(`record: ${VERDICT[t.verdict]}; ${t.events.length} events in ${t.chains.length} chains`);
  for (const c of t.chains)
    lines.push(`  chain ${c.publisher}: seq ${c.firstSeq}..${c.lastSeq} (${c.events} events)`);
  const times = t.events.map((e) => Date.parse(e.at)).filter(Number.isFinite);
  if (times.length) {
    const t0 = Math.min(...times);
    const t1 = Math.max(...times, t0 + 1);
    const label = (s: string) => s.padEnd(22).slice(0, 22);
    lines.push(
      '',
      `${label('time')} |0${' '.repeat(AXIS - 1 - duration(t1 - t0).length)}${duration(t1 - t0)}|`,
    );
    for (const p of t.phases) {
      lines.push(
        `${label(`phase ${p.phase}`)} ${span(t0, t1, p.from, p.to)} ${p.durationMs !== undefined ? duration(p.durationMs) : ''}`,
      );
    }
    for (const s of t.steps) {
      const name = `${s.kind === 'compensation' ? '↶ ' : ''}${s.step}${s.attempt > 1 ? ` #${s.attempt}` : ''}`;
      const fill = s.kind === 'compensation' ? '▒' : '█';
      const tail = `${s.durationMs !== undefined ? duration(s.durationMs) : ''} ${s.status}${s.error ? ` ${s.error.code}: ${s.error.message}` : ''}`;
      lines.push(`${label(name)} ${span(t0, t1, s.startedAt, s.endedAt, fill)} ${tail}`);
    }
    if (t.blackout) {
      const qemu =
        t.blackout.downtimeMs !== undefined ? `, hypervisor downtime ${duration(t.blackout.downtimeMs)}` : '';
      lines.push(
        `${label('BLACKOUT')} ${span(t0, t1, t.blackout.from, t.blackout.to, '▓')} ${duration(t.blackout.durationMs)}${qemu}`,
      );
    }
    if (t.progress.length || t.dataPlane.length) lines.push('', 'data plane:');
    for (const p of t.progress) {
      const total =
        typeof p['bytesTotal'] === 'number'
          ? `/${totalText({ bytesTotal: p['bytesTotal'], bytesTotalEstimated: p['bytesTotalEstimated'] === true })}`
          : '';
      lines.push(
        `${rel(t0, p.at)}  ${p.reporter} ${String(p['stage'] ?? p['step'])}: ${bytes(Number(p['bytesTransferred']))}${total}`,
      );
    }
    for (const e of t.dataPlane)
      lines.push(`${rel(t0, e.at)}  ${e.source} ${e.name} ${JSON.stringify(figures(e.data))}`);
    if (t.keyReleases.length) lines.push('', 'keys and evidence:');
    for (const e of t.keyReleases)
      lines.push(
        `${rel(t0, e.at)}  ${e.source} ${e.subject.split('.').slice(2).join('.')} ${JSON.stringify(figures(e.data))}`,
      );
    lines.push('', 'events (signature, chain link):');
    for (const e of t.events) {
      lines.push(
        `  #${String(e.streamSeq).padEnd(6)}${rel(t0, e.at)}  ${e.source.padEnd(20)} ${e.subject.split('.').slice(2).join('.')}  seq ${e.chainSeq ?? '-'}  sig ${e.signature}, link ${e.link}`,
      );
    }
  }
  if (t.findings.length) {
    lines.push('', 'findings:');
    for (const f of t.findings) lines.push(`  ${findingLine(f)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** A participant event's data without the fields every event has. */
function figures(d: Record<string, unknown>): Record<string, unknown> {
  const { migrationId: _m, at: _a, seq: _s, ...rest } = d;
  return rest;
}
