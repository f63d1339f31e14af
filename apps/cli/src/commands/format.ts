import {
  isFinalMigrationPhase,
  type DataPlaneProgress,
  type MigrationDetail,
  type MigrationEventData,
  type MigrationEventName,
  type MigrationFigures,
  type MigrationSummary,
} from '@ccm/contracts';

/** `1234` → `1.2 s`, `42` → `42 ms`, `90000` → `1.5 min`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

/** `1536` → `1.5 KiB`. */
export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** A text progress bar: `[########------------]  40%`. */
export function bar(done: number, total: number, width = 20): string {
  const f = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const filled = Math.round(f * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.round(f * 100)).padStart(3)}%`;
}

type AnyEvent = { [N in MigrationEventName]: { name: N; data: MigrationEventData<N> } }[MigrationEventName];

/** One line for a migration event, or undefined for events not worth a line. */
export function eventLine(e: AnyEvent): string | undefined {
  switch (e.name) {
    case 'requested':
      return `queued: ${e.data.kind} ${e.data.workload} ${e.data.sourceHost} → ${e.data.targetHost} (${e.data.priority})`;
    case 'rejected':
      return `rejected: ${e.data.message} [${e.data.code}]`;
    case 'admitted':
      return `admitted after ${duration(e.data.waitedMs)} in the queue`;
    case 'phase-changed':
      // The end is told by `finished`, with the duration.
      if (isFinalMigrationPhase(e.data.to)) return undefined;
      return `phase ${e.data.from} → ${e.data.to}${e.data.reason ? `: ${e.data.reason}` : ''}`;
    case 'step-started':
      return `  ▸ ${e.data.step} (${e.data.participant} ${e.data.command}${e.data.attempt > 1 ? `, attempt ${e.data.attempt}` : ''})`;
    case 'step-succeeded':
      return `  ✓ ${e.data.step} in ${duration(e.data.durationMs)}`;
    case 'step-failed':
      return `  ✗ ${e.data.step} failed after ${duration(e.data.durationMs)}: ${e.data.error?.code}: ${e.data.error?.message}`;
    case 'step-timed-out':
      return `  ✗ ${e.data.step} timed out after ${duration(e.data.durationMs)}`;
    case 'compensation-started':
      return `  ↶ undoing ${e.data.step} (${e.data.participant} ${e.data.command})`;
    case 'compensation-succeeded':
      return `  ↶ ${e.data.step} undone in ${duration(e.data.durationMs)}`;
    case 'compensation-failed':
      return `  ✗ undoing ${e.data.step} failed: ${e.data.error?.code}: ${e.data.error?.message}`;
    case 'compensation-timed-out':
      return `  ✗ undoing ${e.data.step} timed out after ${duration(e.data.durationMs)}`;
    case 'retry-scheduled':
      return `    retrying ${e.data.step} (${e.data.kind} attempt ${e.data.attempt}) in ${duration(e.data.delayMs)}`;
    case 'progressed': {
      const p = e.data.progress;
      const what = p.stage ?? p.step;
      return p.bytesTotal
        ? `    ${what} ${bar(p.bytesTransferred, p.bytesTotal)} ${bytes(p.bytesTransferred)} / ${totalText(p)}`
        : `    ${what}: ${bytes(p.bytesTransferred)} sent`;
    }
    case 'cancel-accepted':
      return `cancel accepted: ${e.data.reason}`;
    case 'cancel-refused':
      return `cancel refused (${e.data.reason}): ${e.data.message}`;
    case 'finished':
      return `${e.data.phase} after ${duration(e.data.durationMs)}: ${e.data.reason}${figuresText(e.data.figures)}`;
  }
}

/** A progress event's total: `~40.0 MiB (estimate)` when the reporter only estimates it. */
export function totalText(p: Pick<DataPlaneProgress, 'bytesTotal' | 'bytesTotalEstimated'>): string {
  if (p.bytesTotal === undefined) return '';
  return p.bytesTotalEstimated ? `~${bytes(p.bytesTotal)} (estimate)` : bytes(p.bytesTotal);
}

/** `; blackout 1.2 s, brownout 48 ms (cut-over 330 ms, 3 peers)`, or '' when nothing was measured. */
export function figuresText(f: MigrationFigures | undefined): string {
  if (!f) return '';
  const parts: string[] = [];
  if (f.blackoutMs !== undefined) parts.push(`blackout ${duration(f.blackoutMs)}`);
  if (f.frozenMs !== undefined) parts.push(`container frozen ${duration(f.frozenMs)}`);
  if (f.downtimeMs !== undefined) parts.push(`hypervisor downtime ${duration(f.downtimeMs)}`);
  if (f.brownoutMs !== undefined) {
    const cut =
      f.cutOverMs === undefined
        ? ''
        : ` (cut-over ${duration(f.cutOverMs)}${f.peersUpdated === undefined ? '' : `, ${f.peersUpdated} peers`})`;
    parts.push(`brownout ${f.brownoutMs === null ? 'not measured' : duration(f.brownoutMs)}${cut}`);
  }
  return parts.length ? `; ${parts.join(', ')}` : '';
}

/** The `ccm migrations` table. */
export function summaryTable(items: readonly MigrationSummary[]): string {
  const rows = items.map((m) => [
    m.id,
    m.phase,
    `${m.kind}/${m.workload}`,
    `${m.sourceHost} → ${m.targetHost}`,
    m.priority,
    m.currentStep ?? '',
    m.createdAt,
  ]);
  const head = ['ID', 'PHASE', 'WORKLOAD', 'HOSTS', 'PRIORITY', 'STEP', 'REQUESTED'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

/** The `ccm migration <id>` view: header, phase history and every step attempt. */
export function detailView(m: MigrationDetail): string {
  const out = [
    `${m.id}  ${m.phase}${m.reason ? `: ${m.reason}` : ''}`,
    `  ${m.kind} ${m.workload}  ${m.sourceHost} → ${m.targetHost}  priority ${m.priority}  by ${m.requestedBy}`,
    `  saga ${m.saga}  idempotency key ${m.idempotencyKey}`,
    ...(m.figures ? [`  figures${figuresText(m.figures).slice(1)}`] : []),
    ...(m.pointOfNoReturn
      ? [`  point of no return moved to ${m.pointOfNoReturn.step}: ${m.pointOfNoReturn.reason}`]
      : []),
    'phases:',
    ...m.phaseHistory.map((h) => `  ${h.at}  ${h.phase}${h.reason ? `: ${h.reason}` : ''}`),
    'steps:',
  ];
  for (const s of m.steps) {
    out.push(`  ${s.name.padEnd(18)} ${s.status}`);
    for (const a of s.attempts) {
      const took = a.durationMs === undefined ? 'in flight' : duration(a.durationMs);
      const err = a.error ? `  ${a.error.code}: ${a.error.message}` : '';
      out.push(`    ${a.kind} #${a.attempt} ${a.participant} ${a.command}: ${a.status} (${took})${err}`);
    }
  }
  return out.join('\n');
}
