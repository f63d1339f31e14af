import {
  type AuditedEvent,
  type ChainSummary,
  type Finding,
  type MigrationRecord,
  type Verdict,
} from './types.js';

export interface TimelineStep {
  step: string;
  kind: 'action' | 'compensation';
  attempt: number;
  participant: string;
  command: string;
  startedAt: string;
  endedAt?: string;
  durationMs?: number;
  status: 'running' | 'succeeded' | 'failed' | 'timed-out';
  error?: { code: string; message: string };
}

export interface TimelinePhase {
  phase: string;
  from: string;
  to?: string;
  durationMs?: number;
}

/** A participant's own event about the migration (data-plane figures, key releases, ...). */
export interface ParticipantEvent {
  at: string;
  source: string;
  subject: string;
  name: string;
  data: Record<string, unknown>;
}

export interface TimelineEvent {
  streamSeq: number;
  at: string;
  subject: string;
  source: string;
  chainId?: string;
  chainSeq?: number;
  signature: 'valid';
  link: 'valid' | 'broken';
}

/** A migration rebuilt from its events alone. */
export interface Timeline {
  migrationId: string;
  verdict: Verdict;
  request?: Record<string, unknown> & { at: string };
  startedAt?: string;
  endedAt?: string;
  durationMs?: number;
  outcome?: { phase: string; reason: string };
  phases: TimelinePhase[];
  steps: TimelineStep[];
  progress: Array<Record<string, unknown> & { at: string; reporter: string }>;
  dataPlane: ParticipantEvent[];
  keyReleases: ParticipantEvent[];
  /** When the workload did not run: freeze to cut-over (containers), the switch-over (VMs). */
  blackout?: { from: string; to: string; durationMs: number; downtimeMs?: number };
  events: TimelineEvent[];
  chains: ChainSummary[];
  findings: Finding[];
}

type Data = Record<string, unknown>;
const at = (e: AuditedEvent): string => {
  const d = e.env.data as Data | undefined;
  return typeof d?.['at'] === 'string' ? d['at'] : e.env.time;
};
const ms = (a: string, b: string): number => Date.parse(b) - Date.parse(a);
const nameOf = (subject: string): string => subject.split('.').at(-1) ?? subject;

const SETTLED: Record<string, TimelineStep['status']> = {
  succeeded: 'succeeded',
  failed: 'failed',
  'timed-out': 'timed-out',
};

function stepEvent(steps: TimelineStep[], name: string, d: Data, when: string): void {
  const [kind, outcome] = name.startsWith('compensation-')
    ? (['compensation', name.slice('compensation-'.length)] as const)
    : (['action', name.slice('step-'.length)] as const);
  if (outcome === 'started') {
    steps.push({
      step: String(d['step']),
      kind,
      attempt: Number(d['attempt']),
      participant: String(d['participant']),
      command: String(d['command']),
      startedAt: when,
      status: 'running',
    });
    return;
  }
  const open = steps.findLast(
    (s) => s.step === d['step'] && s.kind === kind && s.attempt === d['attempt'] && s.status === 'running',
  );
  if (!open) return;
  open.status = SETTLED[outcome] ?? 'failed';
  open.endedAt = when;
  open.durationMs = typeof d['durationMs'] === 'number' ? d['durationMs'] : ms(open.startedAt, when);
  const err = d['error'] as { code: string; message: string } | undefined;
  if (err) open.error = { code: err.code, message: err.message };
}

function blackoutOf(t: Timeline): Timeline['blackout'] {
  const freeze = t.steps.find((s) => s.step === 'freeze-dump' && s.kind === 'action');
  const cut = t.steps.findLast((s) => s.step === 'cut-over' && s.kind === 'action' && s.endedAt);
  const switchOver = t.steps.findLast((s) => s.step === 'switch-over' && s.kind === 'action' && s.endedAt);
  const downtime = t.dataPlane.findLast((e) => e.name === 'completed')?.data['downtimeMs'];
  const extra = typeof downtime === 'number' ? { downtimeMs: downtime } : {};
  if (freeze && cut?.endedAt)
    return {
      from: freeze.startedAt,
      to: cut.endedAt,
      durationMs: ms(freeze.startedAt, cut.endedAt),
      ...extra,
    };
  if (switchOver?.endedAt)
    return {
      from: switchOver.startedAt,
      to: switchOver.endedAt,
      durationMs: ms(switchOver.startedAt, switchOver.endedAt),
      ...extra,
    };
  return undefined;
}

/** Rebuilds a migration's timeline from its audited events (coordinator and participants). */
export function buildTimeline(r: MigrationRecord): Timeline {
  const t: Timeline = {
    migrationId: r.migrationId,
    verdict: r.verdict,
    phases: [],
    steps: [],
    progress: [],
    dataPlane: [],
    keyReleases: [],
    events: [],
    chains: r.chains,
    findings: r.findings,
  };
  const coordinator = r.events
    .filter((e) => e.env.source === 'saga-coordinator')
    .sort((a, b) => (a.env.chainseq ?? 0) - (b.env.chainseq ?? 0));
  for (const e of coordinator) {
    const d = (e.env.data ?? {}) as Data;
    const name = nameOf(e.subject);
    const when = at(e);
    if (name === 'requested') {
      const { migrationId: _m, seq: _s, request: _r, ...rest } = d;
      t.request = { ...rest, at: when };
      t.startedAt = when;
      t.phases.push({ phase: 'Pending', from: when });
    } else if (name === 'phase-changed') {
      const last = t.phases.at(-1);
      if (last && !last.to) Object.assign(last, { to: when, durationMs: ms(last.from, when) });
      t.phases.push({ phase: String(d['to']), from: when });
    } else if (name.startsWith('step-') || name.startsWith('compensation-')) {
      stepEvent(t.steps, name, d, when);
    } else if (name === 'progressed') {
      t.progress.push({ ...(d['progress'] as Data), at: when, reporter: String(d['reporter']) });
    } else if (name === 'finished' || name === 'rejected') {
      const phase = name === 'rejected' ? 'Rejected' : String(d['phase']);
      t.outcome = { phase, reason: String(d['reason'] ?? d['message']) };
      t.endedAt = when;
      if (t.startedAt) t.durationMs = ms(t.startedAt, when);
      const last = t.phases.at(-1);
      if (last && !last.to) Object.assign(last, { to: when, durationMs: ms(last.from, when) });
      if (last?.phase !== phase) t.phases.push({ phase, from: when, to: when, durationMs: 0 });
    }
  }
  for (const e of r.events) {
    t.events.push({
      streamSeq: e.streamSeq,
      at: at(e),
      subject: e.subject,
      source: e.env.source,
      ...(e.env.chainid ? { chainId: e.env.chainid, chainSeq: e.env.chainseq } : {}),
      signature: 'valid',
      link: e.linkOk ? 'valid' : 'broken',
    });
    if (e.env.source === 'saga-coordinator') continue;
    const p: ParticipantEvent = {
      at: at(e),
      source: e.env.source,
      subject: e.subject,
      name: nameOf(e.subject),
      data: (e.env.data ?? {}) as Data,
    };
    const aggregate = e.subject.split('.')[2];
    if (aggregate === 'key' || aggregate === 'attestation' || aggregate === 'secret') t.keyReleases.push(p);
    else t.dataPlane.push(p);
  }
  t.blackout = blackoutOf(t);
  return t;
}
