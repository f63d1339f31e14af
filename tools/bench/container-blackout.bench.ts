/**
 * Container blackout benchmark (issue 12): a runc container moves between two real container guests
 * (QEMU, TCG) through apps/container-checkpoint's pre-copy, freeze-dump, restore and commit, for each
 * heap × dirty rate. Per case it prints the pre-copy rounds (pages and sealed bytes each, whether the
 * dirty-page threshold stopped them), the final dump's size, the blackout (container-checkpoint's
 * `frozenMs`: source frozen → resumed at the target, through NATS) beside CRIU's own time in the same
 * run for the same container (the final `runc checkpoint` in A, `runc restore` in B, as the runc
 * driver times them), and whether blackout ≤ CRIU dump + restore + 50 ms (the goal). Then the
 * blackout's breakdown, one column per case: the parts the source guest, container-checkpoint and
 * the target guest time (the `freeze-dump` and `restore` replies' `phasesMs`), the NATS round trips
 * and agent handling around each guest call (call time less the guest's parts), and the time between
 * the two steps.
 *
 * Run: `npm run bench:container-blackout` (root, QEMU, TUN; builds the container image the first
 * time). Environment: CCM_BENCH_HEAPS_MIB (default "32,256"), CCM_BENCH_DIRTY_RATES (heap pages
 * rewritten a second, default "128,1024"), CCM_BENCH_GUEST_MIB (each guest's memory, default 4096),
 * CCM_BENCH_THRESHOLD_PAGES (3072) and CCM_BENCH_MAX_ROUNDS (4) for container-checkpoint; `--json`
 * prints the rows as JSON too. A failed case ends the bench with exit code 1 after stopping
 * everything; so do Ctrl-C and SIGTERM.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { findQemuBinary } from '@ccm/qmp';
import { pollUntil } from '@ccm/testing';
import { containerBuildUnavailable } from '../guest-image/container-image.js';
import { LAB_GUESTS, RuncLab } from '../guest-image/runc-lab.js';
import { onStopSignals } from '../run/stop-signals.js';

const list = (name: string, fallback: string): number[] => {
  const v = (process.env[name] ?? fallback).split(',').map(Number);
  if (v.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error(`${name} must list positive integers`);
  return v;
};
const HEAPS_MIB = list('CCM_BENCH_HEAPS_MIB', '32,256');
const RATES = list('CCM_BENCH_DIRTY_RATES', '128,1024');
const [GUEST_MIB] = list('CCM_BENCH_GUEST_MIB', '4096');
const [THRESHOLD] = list('CCM_BENCH_THRESHOLD_PAGES', '3072');
const [MAX_ROUNDS] = list('CCM_BENCH_MAX_ROUNDS', '4');
const GOAL_SLACK_MS = 50;
const { a: A, b: B } = LAB_GUESTS;

interface Row {
  heapMiB: number;
  dirtyPagesPerSec: number;
  rounds: number;
  converged: boolean;
  perRound: Array<{ pages: number; imageBytes: number; durationMs: number; dirtyPages: number }>;
  finalPages: number;
  finalBytes: number;
  /** A's part of the final round: freeze, CRIU's dump, packing, sealing and the stream to B. */
  finalRoundMs: number;
  blackoutMs: number;
  criuDumpMs: number;
  criuRestoreMs: number;
  met: boolean;
  /** The blackout in named parts (ms), in order; they add up to the blackout. */
  parts: Array<[string, number]>;
}

type Ms = Record<string, number>;
const ms = (v: unknown): Ms => (v && typeof v === 'object' ? (v as Ms) : {});
const total = (o: Ms) => Object.values(o).reduce((a, b) => a + b, 0);

/** The blackout's parts from the freeze-dump and restore replies' timings. */
function breakdown(
  dump: Record<string, unknown>,
  restored: Record<string, unknown>,
): Array<[string, number]> {
  const cc = ms(dump['phasesMs']);
  const src = ms(dump['sourcePhasesMs']);
  const rs = ms(restored['phasesMs']);
  const tr = ms(restored['targetRestorePhasesMs']);
  const tm = ms(restored['targetResumePhasesMs']);
  const g = (o: Ms, k: string) => o[k] ?? 0;
  const dumpCall = g(cc, 'dumpCall');
  // The target resumes inside the restore call (`resume: true`), or in a call of its own.
  const oneCall = rs['resumeCall'] === undefined;
  return [
    ['cc: record frozen', g(cc, 'markFrozen')],
    ['A: describe', g(src, 'describe')],
    ['A: netns lock', g(src, 'lock')],
    ['A: runc pause', g(src, 'pause')],
    ['A: CRIU dump', g(src, 'criuDump')],
    // The image files are read and packed as the stream seals and sends them (not whole first).
    ['A: list image files', g(src, 'list')],
    ['A: read + pack + seal + stream + verdict', g(src, 'stream')],
    ['dump call: NATS + agent', dumpCall - total(src)],
    ['cc: record round + dumped', g(cc, 'record') + g(cc, 'markDumped')],
    [
      'between freeze-dump and restore steps',
      (restored['frozenBeforeMs'] as number) - (dump['frozenSoFarMs'] as number),
    ],
    ['B: validate rounds', g(tr, 'validate')],
    ['B: wait for the staged rounds', g(tr, 'staged')],
    ['B: write rounds not staged', g(tr, 'write')],
    ['B: prepare (clear, netns, bundle)', g(tr, 'prepare')],
    ['B: runc restore (CRIU)', g(tr, 'criuRestore')],
    ['B: state after restore', g(tr, 'info')],
    ['restore call: NATS + agent', g(rs, 'restoreCall') - total(tr) - (oneCall ? total(tm) : 0)],
    ['B: runc continue', g(tm, 'continue')],
    ['B: netns unlock', g(tm, 'unlock')],
    ['B: state after resume', g(tm, 'info')],
    ['resume call: NATS + agent', oneCall ? 0 : g(rs, 'resumeCall') - total(tm)],
  ];
}

const mb = (b: number) => (b / 1e6).toFixed(1);

async function runCase(lab: RuncLab, heapMiB: number, rate: number, n: number): Promise<Row> {
  const id = `bench-${n}`;
  const { base, step } = await lab.checkpointSteps(id);
  await lab.runWithKey(id, base.migrationId, heapMiB * 256, rate);
  const preCopy = await step('pre-copy');
  const dump = await step('freeze-dump');
  const restored = await step('restore');
  const frozenAt = await lab.counter(A.vm, id);
  await pollUntil(
    `${id} counts on in B`,
    () => lab.counter(B.vm, id),
    (c) => c > frozenAt + 3,
    { timeoutMs: 120_000, intervalMs: 500 },
  );
  // CRIU's own times: the final round's report again (the guest answers a repeated round with its
  // first report) and the restored container's restoreMs.
  const finalRound = dump['round'] as number;
  const report = await lab.g.send(A.vm, 'dump', {
    migrationId: base.migrationId,
    containerId: id,
    round: finalRound,
    target: { host: B.ip, port: 1 },
  });
  const atB = await lab.g.send(B.vm, 'describe', { id });
  await step('commit');
  const blackoutMs = restored['frozenMs'] as number;
  const criuDumpMs = report.runtimeMs as number;
  const criuRestoreMs = atB.restoreMs as number;
  if (typeof criuDumpMs !== 'number' || typeof criuRestoreMs !== 'number')
    throw new Error(
      `the runc driver reported no CRIU times (${String(criuDumpMs)}, ${String(criuRestoreMs)})`,
    );
  return {
    heapMiB,
    dirtyPagesPerSec: rate,
    rounds: preCopy['rounds'] as number,
    converged: preCopy['converged'] as boolean,
    perRound: preCopy['perRound'] as Row['perRound'],
    finalPages: dump['pages'] as number,
    finalBytes: dump['imageBytes'] as number,
    finalRoundMs: dump['durationMs'] as number,
    blackoutMs,
    criuDumpMs,
    criuRestoreMs,
    met: blackoutMs <= criuDumpMs + criuRestoreMs + GOAL_SLACK_MS,
    parts: breakdown(dump, restored),
  };
}

function table(rows: Row[]): string {
  const head = [
    'heap',
    'dirty pages/s',
    'pre-copy rounds (pages, MB sealed, dirty after)',
    'stopped by',
    'final dump (freeze + dump + stream in A)',
    'blackout',
    'CRIU dump + restore',
    `goal (≤ CRIU + ${GOAL_SLACK_MS} ms)`,
  ];
  const body = rows.map((r) => [
    `${r.heapMiB} MiB`,
    String(r.dirtyPagesPerSec),
    r.perRound.map((p) => `${p.pages} p ${mb(p.imageBytes)} MB → ${p.dirtyPages}`).join('; '),
    r.converged ? 'threshold' : 'round limit',
    `${r.finalPages} p ${mb(r.finalBytes)} MB, ${r.finalRoundMs.toFixed(0)} ms in A`,
    `${r.blackoutMs.toFixed(0)} ms`,
    `${r.criuDumpMs.toFixed(0)} + ${r.criuRestoreMs.toFixed(0)} = ${(r.criuDumpMs + r.criuRestoreMs).toFixed(0)} ms`,
    r.met ? 'met' : `not met (+${(r.blackoutMs - r.criuDumpMs - r.criuRestoreMs).toFixed(0)} ms over CRIU)`,
  ]);
  return markdown(head, body);
}

const markdown = (head: string[], body: string[][]) => {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...body.map(line)].join('\n');
};

/** The blackout's parts, one column per case; the last line is what the parts leave unexplained. */
function breakdownTable(rows: Row[]): string {
  const head = ['part of the blackout (ms)', ...rows.map((r) => `${r.heapMiB} MiB @ ${r.dirtyPagesPerSec}`)];
  const body = (rows[0]?.parts ?? []).map(([name], i) => [
    name,
    ...rows.map((r) => r.parts[i][1].toFixed(0)),
  ]);
  body.push(['blackout (frozenMs)', ...rows.map((r) => r.blackoutMs.toFixed(0))]);
  body.push([
    'not in a part',
    ...rows.map((r) => (r.blackoutMs - r.parts.reduce((a, [, v]) => a + v, 0)).toFixed(0)),
  ]);
  return markdown(head, body);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { json: { type: 'boolean', default: false } } });
  const why = findQemuBinary() ? containerBuildUnavailable() : 'qemu-system-x86_64 is not installed';
  if (why) {
    console.log(`container-blackout: cannot run here: ${why}`);
    return;
  }
  const lab = new RuncLab({
    repoRoot: resolve(import.meta.dirname, '..', '..', '..'),
    tag: process.pid % 100000,
    memoryMiB: GUEST_MIB,
    checkpointEnv: {
      CCM_CHECKPOINT_DIRTY_THRESHOLD_PAGES: String(THRESHOLD),
      CCM_CHECKPOINT_MAX_ROUNDS: String(MAX_ROUNDS),
    },
    guestEnv: { CCM_GUEST_RUNC_TIMEOUT_MS: '900000' },
    log: (l) => console.log(`[lab] ${l}`),
  });
  const signals = onStopSignals('container-blackout', () => lab.stop());
  const rows: Row[] = [];
  try {
    await lab.start();
    let n = 0;
    for (const heap of HEAPS_MIB) {
      for (const rate of RATES) {
        const t0 = Date.now();
        const row = await runCase(lab, heap, rate, ++n);
        rows.push(row);
        console.log(
          `[case] ${heap} MiB at ${rate} pages/s: ${row.rounds} rounds, final ${mb(row.finalBytes)} MB, ` +
            `blackout ${row.blackoutMs.toFixed(0)} ms, CRIU ${row.criuDumpMs.toFixed(0)} + ${row.criuRestoreMs.toFixed(0)} ms (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
        );
      }
    }
  } finally {
    await lab.stop();
    signals.dispose();
  }
  console.log(
    `\ncontainer blackout, TCG, two guests of ${GUEST_MIB} MiB, threshold ${THRESHOLD} pages, at most ${MAX_ROUNDS} rounds:\n`,
  );
  console.log(table(rows));
  console.log(`\nwhere the blackout goes:\n`);
  console.log(breakdownTable(rows));
  if (values.json) console.log(JSON.stringify(rows));
}

main().catch((err: unknown) => {
  console.error(`container-blackout: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
