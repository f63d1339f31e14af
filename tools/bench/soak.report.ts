import { type MigrationFigures } from '@ccm/qmp';

/** One soak run: a completed migration (the guest lost or not), or a migration that failed. */
export type SoakRun = { figures: MigrationFigures; lost?: string } | { failed: string };

/** All runs of one contender × QEMU × dirty rate. */
export interface Cell {
  contender: string;
  qemu: string;
  rate: number;
  runs: SoakRun[];
}

export interface CellSummary {
  contender: string;
  qemu: string;
  rate: number;
  migrations: number;
  failed: number;
  lost: number;
  totalP50: number;
  totalP99: number;
  downtimeP50: number;
  downtimeP99: number;
  /** The first loss and the first failure, verbatim. */
  firstLoss?: string;
  firstFailure?: string;
}

/** The p-th percentile (nearest rank) of `xs`; NaN when empty. */
export function percentile(xs: number[], p: number): number {
  if (!xs.length) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export function summarize(cell: Cell): CellSummary {
  const done = cell.runs.flatMap((r) => ('figures' in r ? [r] : []));
  const totals = done.map((r) => r.figures.totalTimeMs);
  const downs = done.map((r) => r.figures.downtimeMs);
  const lost = done.filter((r) => r.lost);
  const failed = cell.runs.flatMap((r) => ('failed' in r ? [r.failed] : []));
  return {
    contender: cell.contender,
    qemu: cell.qemu,
    rate: cell.rate,
    migrations: cell.runs.length,
    failed: failed.length,
    lost: lost.length,
    totalP50: percentile(totals, 50),
    totalP99: percentile(totals, 99),
    downtimeP50: percentile(downs, 50),
    downtimeP99: percentile(downs, 99),
    firstLoss: lost[0]?.lost,
    firstFailure: failed[0],
  };
}

/** A markdown table (pasted into docs/data-plane.md as it is), then the first loss and failure of each cell. */
export function printSoakTable(rows: CellSummary[]): void {
  const head = [
    'contender',
    'QEMU',
    'dirty MB/s',
    'migrations',
    'failed',
    'guest losses',
    'total p50/p99 ms',
    'downtime p50/p99 ms',
  ];
  const fmt = (v: number) => (Number.isNaN(v) ? '–' : String(Math.round(v)));
  const lines = rows.map((r) => [
    r.contender,
    r.qemu,
    String(r.rate),
    String(r.migrations),
    String(r.failed),
    String(r.lost),
    `${fmt(r.totalP50)} / ${fmt(r.totalP99)}`,
    `${fmt(r.downtimeP50)} / ${fmt(r.downtimeP99)}`,
  ]);
  console.log(`| ${head.join(' | ')} |`);
  console.log(`|${head.map(() => '---').join('|')}|`);
  for (const l of lines) console.log(`| ${l.join(' | ')} |`);
  for (const r of rows) {
    if (r.firstLoss) console.log(`first loss, ${r.contender}, ${r.qemu}, ${r.rate} MB/s: ${r.firstLoss}`);
    if (r.firstFailure)
      console.log(`first failure, ${r.contender}, ${r.qemu}, ${r.rate} MB/s: ${r.firstFailure}`);
  }
}
