/**
 * QMP migration benchmark: the tiny guest live-migrated between two QEMUs (TCG) on loopback, N runs per
 * contender, printing QEMU's own figures (total time, downtime, setup time, MB transferred) and the wall
 * time seen by the caller. Prints figures only (no assertions).
 *
 * Contenders (qmp-migrate.contenders.ts) are the ways of driving the same migration: the bare @ccm/qmp
 * client, and the host-agent (two agent processes driven over NATS, host-agent.contender.ts). Same guest,
 * same limits, runs interleaved; the last table gives each agent figure as a ratio to the bare one, so
 * the agent's overhead is visible.
 *
 * Run after the build: `npm run bench:qmp` (node dist/tools/bench/qmp-migrate.bench.js [--runs N] [--json]).
 * Environment: QMP_BENCH_RUNS (default 5), QMP_BENCH_DIRTY_MIB (64), QMP_BENCH_DIRTY_RATE (10 MB/s),
 * QMP_BENCH_DOWNTIME_MS (300). Both contenders run CCM's default QEMU (trixie's QEMU 10 when its rootfs
 * is built; CCM_QEMU_BIN overrides): Debian 12's QEMU 7.2 loses TCG guests (docs/data-plane.md).
 * A failed run ends the bench with one line and exit code 1; Ctrl-C and SIGTERM stop everything too.
 */
import { parseArgs } from 'node:util';
import { pollUntil } from '@ccm/testing';
import { chooseQemuBinary, findQemuBinary, qemuVersion } from '@ccm/qmp';
import { onStopSignals } from '../run/stop-signals.js';
import {
  ensureGuestImage,
  guestKernelCommandLine,
  readCounters,
  type GuestImage,
} from '../guest-image/guest-image.js';
import { hostAgentContender } from './host-agent.contender.js';
import { bareQmp, type Contender, type RunResult } from './qmp-migrate.contenders.js';

const env = (name: string, fallback: number): number => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a non-negative number`);
  return v;
};
const DIRTY_MIB = env('QMP_BENCH_DIRTY_MIB', 64);
const DIRTY_RATE = env('QMP_BENCH_DIRTY_RATE', 10);
const DOWNTIME_LIMIT_MS = env('QMP_BENCH_DOWNTIME_MS', 300);
const MAX_BANDWIDTH_BYTES = 1 << 30;
const MEMORY_MIB = 512;

interface Sample extends RunResult {
  bootMs: number;
}

const CONTENDERS: Contender[] = [bareQmp, hostAgentContender()];

/** The pair of the run in progress, stopped by a signal's handler. */
let running: { stop(): Promise<void> } | undefined;

async function runOnce(image: GuestImage, contender: Contender): Promise<Sample> {
  const t0 = Date.now();
  const pair = await contender.startPair({
    kernel: image.kernel,
    initrd: image.initrd,
    append: guestKernelCommandLine({ dirtyMiB: DIRTY_MIB, dirtyRateMBps: DIRTY_RATE }),
    memoryMiB: MEMORY_MIB,
  });
  running = pair;
  try {
    await pollUntil(
      'the source guest to print COUNTER 2',
      () => readCounters(pair.srcSerial),
      (c) => c.length >= 2,
      {
        timeoutMs: 60_000,
        intervalMs: 50,
      },
    );
    const bootMs = Date.now() - t0;
    const result = await contender.migrate(pair, {
      downtimeLimitMs: DOWNTIME_LIMIT_MS,
      maxBandwidthBytesPerSec: MAX_BANDWIDTH_BYTES,
    });
    // A migration only counts if the guest runs on at the destination.
    const lastOnSource = (await readCounters(pair.srcSerial)).at(-1) ?? 0;
    await pollUntil(
      'the destination guest to keep counting',
      () => readCounters(pair.dstSerial),
      (c) => (c.at(-1) ?? 0) > lastOnSource,
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    return { ...result, bootMs };
  } finally {
    running = undefined;
    await pair.stop();
  }
}

const METRICS: [string, (s: Sample) => number, number][] = [
  ['boot to COUNTER 2 (ms)', (s) => s.bootMs, 0],
  ['wall time (ms)', (s) => s.wallMs, 0],
  ['total-time (ms)', (s) => s.figures.totalTimeMs, 0],
  ['downtime (ms)', (s) => s.figures.downtimeMs, 0],
  ['setup-time (ms)', (s) => s.figures.setupTimeMs, 0],
  ['transferred (MB)', (s) => s.figures.transferredBytes / 1e6, 1],
  ['RAM passes', (s) => s.figures.passes, 0],
];

function stats(xs: number[]): { min: number; median: number; mean: number; max: number } {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { min: sorted[0], median, mean: xs.reduce((a, b) => a + b, 0) / xs.length, max: sorted.at(-1)! };
}

/** Each metric's median for every contender after the first, as a ratio to the first (the baseline). */
function printRatios(results: Map<string, Sample[]>): void {
  const [base, ...others] = [...results];
  if (!base) return;
  for (const [name, samples] of others) {
    console.log(`\n${name} / ${base[0]} (median ratio):`);
    for (const [metric, pick] of METRICS.slice(1, 5)) {
      const a = stats(samples.map(pick)).median;
      const b = stats(base[1].map(pick)).median;
      console.log(
        `  ${metric.padEnd(18)} ${b ? (a / b).toFixed(2) : 'n/a'}  (${a.toFixed(0)} vs ${b.toFixed(0)})`,
      );
    }
  }
}

function printTable(results: Map<string, Sample[]>): void {
  const rows: string[][] = [['contender', 'metric', 'min', 'median', 'mean', 'max']];
  for (const [name, samples] of results) {
    for (const [metric, pick, digits] of METRICS) {
      const s = stats(samples.map(pick));
      rows.push([name, metric, ...[s.min, s.median, s.mean, s.max].map((v) => v.toFixed(digits))]);
    }
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) {
    console.log(r.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  '));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string' }, json: { type: 'boolean' } } });
  const runs = Number(values.runs ?? env('QMP_BENCH_RUNS', 5));
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  if (!findQemuBinary())
    throw new Error('qemu-system-x86_64 is not installed (bash tools/dev.sh setup installs it)');
  const qemu = chooseQemuBinary();
  console.error(
    `QEMU: ${qemuVersion(qemu.binary)?.banner ?? '(no version)'} — ${qemu.binary} (${qemu.reason})`,
  );

  const image = await ensureGuestImage({ log: (m) => console.error(m) });
  console.error(`guest image ${image.key} (${image.cached ? 'cached' : `built in ${image.elapsedMs} ms`})`);
  console.error(
    `${runs} run(s) per contender; guest ${MEMORY_MIB} MiB dirtying ${DIRTY_MIB} MiB at ${DIRTY_RATE} MB/s; ` +
      `downtime-limit ${DOWNTIME_LIMIT_MS} ms; one QEMU pair at a time`,
  );
  const results = new Map<string, Sample[]>(CONTENDERS.map((c) => [c.name, []]));
  const signals = onStopSignals('bench:qmp', async () => {
    await running?.stop();
    for (const c of CONTENDERS) await c.teardown?.();
  });
  try {
    for (const c of CONTENDERS) await c.setup?.();
    // Interleave contenders run by run, so drift in machine load spreads evenly over them.
    for (let i = 1; i <= runs; i++) {
      for (const c of CONTENDERS) {
        const s = await runOnce(image, c);
        results.get(c.name)!.push(s);
        const f = s.figures;
        console.error(
          `  run ${i} ${c.name}: total ${f.totalTimeMs} ms, downtime ${f.downtimeMs} ms, ` +
            `${(f.transferredBytes / 1e6).toFixed(1)} MB, wall ${s.wallMs} ms, boot ${s.bootMs} ms`,
        );
      }
    }
  } finally {
    for (const c of CONTENDERS) await c.teardown?.();
    signals.dispose();
  }
  if (values.json) console.log(JSON.stringify(Object.fromEntries(results), null, 2));
  else {
    printTable(results);
    printRatios(results);
  }
}

await main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:qmp failed: ${err instanceof Error ? err.message : String(err)}`);
    // Everything was stopped on the way out; exit even if a stray handle is left.
    process.exit(1);
  },
);
