/**
 * Bus fuzzing at volume: the cases of the e2e fuzz spec (test/e2e/every-contract-subject-...), many
 * more of them, against every service running as its own process on a real nats-server and Postgres.
 * Prints the outcomes per subject and per error code, cases per second, and every finding (an INTERNAL
 * or untyped reply, no reply, something taken that must be refused, a stream message parked as
 * "handler failed" or retried, a service that died or is unhealthy afterwards); exits 1 when there is one.
 *
 * Run: `npm run bench:fuzz` (builds, then node dist/tools/bench/fuzz.bench.js).
 * Environment: FUZZ_BENCH_RUNS (generated cases per subject, default 200), FUZZ_BENCH_SEED (fast-check
 * seed, default random; printed so a run can be replayed).
 */
import {
  casesFor,
  fuzzRequest,
  fuzzStream,
  FuzzTally,
  pingEveryService,
  startFuzzStack,
} from '../fuzz/bus-fuzz.js';

const RUNS = Number(process.env['FUZZ_BENCH_RUNS'] ?? 200);
const SEED = Number(process.env['FUZZ_BENCH_SEED'] ?? Date.now() % 2 ** 31);
if (!Number.isInteger(RUNS) || RUNS < 0) throw new Error('FUZZ_BENCH_RUNS must be a whole number');

const t0 = performance.now();
const fz = await startFuzzStack();
const tally = new FuzzTally();
let failed = false;
try {
  process.stdout.write(
    `every service up in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${fz.targets.length} subjects ` +
      `served, not served yet: ${fz.unserved.map((u) => u.subject).join(', ') || 'none'}\n` +
      `seed ${SEED}, ${RUNS} generated cases per subject plus issue 8's known bad inputs\n`,
  );
  if (fz.uncontracted.length) {
    process.stdout.write(
      `handlers libs/contracts does not name: ${fz.uncontracted.map((w) => w.subject).join(', ')}\n`,
    );
    failed = true;
  }
  const started = performance.now();
  let sent = 0;
  const took: Array<[string, number, number]> = [];
  for (const target of fz.targets) {
    const cases = casesFor(target, RUNS, SEED);
    sent += cases.length;
    const t = performance.now();
    if (target.kind === 'request') await fuzzRequest(fz, target, cases, tally);
    else await fuzzStream(fz, target, cases, tally, { settleMs: 120_000 });
    took.push([target.subject, cases.length, performance.now() - t]);
  }
  took.sort((a, b) => b[2] - a[2]);
  process.stdout.write(
    `slowest subjects: ${took
      .slice(0, 5)
      .map(([s, n, ms]) => `${s} ${n} cases in ${(ms / 1000).toFixed(1)} s`)
      .join('; ')}
`,
  );
  const seconds = (performance.now() - started) / 1000;
  const exited = fz.exited();
  const health = await fz.health();
  const pings = await pingEveryService(fz);
  process.stdout.write(`${tally.report()}\n`);
  process.stdout.write(
    `${sent} cases in ${seconds.toFixed(1)} s (${(sent / seconds).toFixed(0)}/s)\n` +
      `afterwards: exited ${JSON.stringify(exited)}, /health ${JSON.stringify(health)}, ping ${JSON.stringify(pings)}\n`,
  );
  const unwell =
    exited.length > 0 ||
    Object.values(health).some((s) => s !== 200) ||
    Object.values(pings).some((p) => p !== 'ok');
  if (tally.findings.length || unwell) failed = true;
  process.stdout.write(
    tally.findings.length
      ? `${tally.findings.length} findings:\n${tally.findings.map((f) => `  ${f}`).join('\n')}\n`
      : 'no findings\n',
  );
} finally {
  await fz.stop();
}
process.exit(failed ? 1 : 0);
