/**
 * Saga benchmark: the saga-coordinator on the real stack (nats-server with per-identity permissions,
 * Postgres, coordinator replicas as processes) driving container migrations against scripted
 * participants that answer at once, so everything measured is orchestration. Prints figures only.
 *
 * - Latency, one replica, sagas one after another: per step, from a participant's reply to the next
 *   step's command reaching a participant (apply the fact in Postgres, write events, dispatch); per
 *   saga, from publishing `ccm.req.migrate` to receiving its `finished` event (intake, admission, all
 *   12 steps, outbox relay).
 * - Throughput: many sagas queued at once, steps per second with one and with two replicas.
 *
 * Run: `npm run bench:saga` (builds, then node dist/tools/bench/saga.bench.js [--json]).
 * Environment: SAGA_BENCH_SEQUENTIAL (sagas for latency, default 30), SAGA_BENCH_SAGAS (for
 * throughput, default 200), SAGA_BENCH_MAX_ACTIVE (admission limit, default 64).
 */
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { CONTAINER_MIGRATION } from '@ccm/saga';
import { loadTrustStore } from '@ccm/keys';
import {
  newMigration,
  OperatorClient,
  pollUntil,
  ScriptedParticipants,
  startServiceProcess,
  startTestStack,
  type ServiceProcess,
  type TestStack,
} from '@ccm/testing';

const env = (name: string, fallback: number): number => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
  return v;
};
const SEQUENTIAL = env('SAGA_BENCH_SEQUENTIAL', 30);
const SAGAS = env('SAGA_BENCH_SAGAS', 200);
const MAX_ACTIVE = env('SAGA_BENCH_MAX_ACTIVE', 64);
const STEPS = CONTAINER_MIGRATION.steps.length;

function percentile(values: number[], p: number): number {
  if (!values.length) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

const ms = (v: number) => `${v.toFixed(1)} ms`;

interface World {
  stack: TestStack;
  operator: OperatorClient;
  participants: ScriptedParticipants;
  replicas: ServiceProcess[];
  db: pg.Client;
  n: number;
}

async function startReplica(w: World, name: string): Promise<void> {
  const proc = await startServiceProcess(
    'saga-coordinator',
    w.stack.env({
      CCM_INSTANCE_ID: name,
      CCM_LOG_LEVEL: 'log',
      CCM_SAGA_MAX_ACTIVE: String(MAX_ACTIVE),
      CCM_SAGA_MAX_PER_SOURCE_HOST: String(MAX_ACTIVE),
      CCM_SAGA_MAX_PER_TARGET_HOST: String(MAX_ACTIVE),
    }),
    { readyTimeoutMs: 60_000 },
  );
  w.replicas.push(proc);
}

/** Publishes one container migration; returns its id and when it was published. */
async function request(w: World): Promise<{ id: string; at: number }> {
  const { key, id } = newMigration();
  w.n += 1;
  const at = performance.now();
  await w.operator.migrate(
    { workload: `b${w.n}`, sourceHost: `s${w.n % 20}`, targetHost: `t${w.n % 17}` },
    key,
  );
  return { id, at };
}

function finishedAt(w: World, id: string): number | undefined {
  return w.operator.last(id, 'finished')?.seenAt;
}

async function latency(w: World) {
  const perSaga: number[] = [];
  const perStep: number[] = [];
  // Warm-up: connections, prepared plans, JIT.
  for (let i = 0; i < 3; i++) {
    const { id } = await request(w);
    await pollUntil('warm-up saga', () => finishedAt(w, id), Boolean, { timeoutMs: 30_000, intervalMs: 1 });
  }
  for (let i = 0; i < SEQUENTIAL; i++) {
    const { id, at } = await request(w);
    const end = await pollUntil('saga to finish', () => finishedAt(w, id), Boolean, {
      timeoutMs: 30_000,
      intervalMs: 1,
    });
    perSaga.push(end - at);
    const commands = w.participants.receivedFor(id).filter((c) => c.kind === 'action');
    for (let j = 1; j < commands.length; j++) {
      const replied = w.participants.repliedAt(commands[j - 1].key);
      if (replied !== undefined) perStep.push(commands[j].at - replied);
    }
  }
  return { perSaga, perStep };
}

async function throughput(w: World, count: number) {
  const started = performance.now();
  const ids = await Promise.all(Array.from({ length: count }, () => request(w)));
  // Which replica drives how many sagas: the most leases each held at once.
  const peak: Record<string, number> = {};
  const sampler = setInterval(() => {
    void w.db
      .query<{ owner: string; n: number }>(
        `SELECT lease_owner AS owner, count(*)::int AS n FROM saga_coordinator.migration
         WHERE ended_at IS NULL AND lease_owner IS NOT NULL GROUP BY lease_owner`,
      )
      .then((r) => {
        for (const row of r.rows) peak[row.owner] = Math.max(peak[row.owner] ?? 0, row.n);
      })
      .catch(() => undefined);
  }, 100);
  const ends = await pollUntil(
    `${count} sagas to finish`,
    () => {
      const done = ids.map((i) => finishedAt(w, i.id));
      return done.every((d) => d !== undefined) ? done : undefined;
    },
    Boolean,
    { timeoutMs: 600_000, intervalMs: 20 },
  );
  clearInterval(sampler);
  const wallMs = Math.max(...ends) - started;
  const failed = ids.filter((i) => w.operator.last(i.id, 'finished')?.data['phase'] !== 'Succeeded').length;
  return {
    wallMs,
    stepsPerSecond: (count * STEPS * 1000) / wallMs,
    sagasPerSecond: (count * 1000) / wallMs,
    failed,
    peakLeases: peak,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { json: { type: 'boolean' } } });
  const stack = await startTestStack({ scriptedHosts: true });
  const trust = await loadTrustStore(stack.keysDir);
  const actors = { connectAs: stack.connectAs, identity: stack.identity, trust };
  const w: World = {
    stack,
    operator: await OperatorClient.connect(actors),
    participants: await ScriptedParticipants.start(actors),
    replicas: [],
    db: new pg.Client(stack.postgres.url),
    n: 0,
  };
  await w.db.connect();
  try {
    await startReplica(w, 'bench-1');
    const lat = await latency(w);
    const one = await throughput(w, SAGAS);
    await startReplica(w, 'bench-2');
    const two = await throughput(w, SAGAS);
    const figures = {
      machine: { cpus: cpus().length, model: cpus()[0]?.model },
      latency: {
        sagas: SEQUENTIAL,
        stepsPerSaga: STEPS,
        perStepMs: {
          p50: percentile(lat.perStep, 50),
          p99: percentile(lat.perStep, 99),
          n: lat.perStep.length,
        },
        perSagaMs: {
          p50: percentile(lat.perSaga, 50),
          p99: percentile(lat.perSaga, 99),
          n: lat.perSaga.length,
        },
      },
      throughput: { sagas: SAGAS, maxActive: MAX_ACTIVE, oneReplica: one, twoReplicas: two },
    };
    if (values.json) {
      process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
      return;
    }
    const l = figures.latency;
    const out = [
      `saga-coordinator benchmark: scripted participants answer at once; nats-server, Postgres and the`,
      `coordinator replicas share this machine (${figures.machine.cpus} × ${figures.machine.model ?? 'cpu'})`,
      ``,
      `orchestration overhead, 1 replica, ${SEQUENTIAL} container sagas one after another (${STEPS} steps each):`,
      `  per step  (reply → next command)        p50 ${ms(l.perStepMs.p50)}   p99 ${ms(l.perStepMs.p99)}   (${l.perStepMs.n} steps)`,
      `  per saga  (request → finished event)    p50 ${ms(l.perSagaMs.p50)}   p99 ${ms(l.perSagaMs.p99)}`,
      ``,
      `throughput, ${SAGAS} container sagas queued at once, up to ${MAX_ACTIVE} running:`,
      ...(
        [
          ['1 replica ', one],
          ['2 replicas', two],
        ] as const
      ).map(
        ([label, r]) =>
          `  ${label}  ${r.stepsPerSecond.toFixed(0).padStart(6)} steps/s  ${r.sagasPerSecond.toFixed(1).padStart(6)} sagas/s  wall ${(r.wallMs / 1000).toFixed(2)} s  peak leases ${JSON.stringify(r.peakLeases)}${r.failed ? `  (${r.failed} did not succeed!)` : ''}`,
      ),
    ];
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await Promise.allSettled(w.replicas.map((r) => r.stop('SIGTERM')));
    await w.participants.stop();
    await w.operator.close();
    await w.db.end();
    await stack.stop();
  }
}

await main();
