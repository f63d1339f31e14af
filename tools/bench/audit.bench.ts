/**
 * Audit throughput: `ccm audit replay`/`verify`'s work on 100k CCM_EVENTS messages (parse, envelope
 * shape, every Ed25519 signature against the trust store, publisher entitlement, every chain link,
 * cross-links, and each migration's timeline), in events per second, printed beside the Ed25519
 * verifications per second this machine does in the same run: the bound, since each event costs one.
 * Reading the stream from NATS is not in the figure. Prints figures only.
 *
 * Run: npm run bench:audit  (compiled by tools/build.mjs to dist/tools/bench/audit.bench.js)
 *   BENCH_EVENTS (default 100000, a multiple of 20), BENCH_SECONDS (Ed25519 loop, default 2)
 */
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { auditEvents, buildTimeline, type StoredEvent } from '@ccm/messaging';
import { memoryIdentity, ScriptedRecord, trustOf } from '@ccm/messaging/internal';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 100_000);
const BENCH_SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const PER_MIGRATION = 20;
const STEPS = ['attest-target', 'provision-target', 'release-key', 'pre-copy', 'cut-over'];

const operator = memoryIdentity('operator');
const coordinator = memoryIdentity('saga-coordinator');
const hostAgent = memoryIdentity('host-agent');
const keyBroker = memoryIdentity('key-broker');
const trust = trustOf([operator, coordinator, hostAgent, keyBroker], { 'host-agent': 'host-a' });

/** One migration's 20 events as CCM's publishers chain them: 3 publishers, 14 coordinator events. */
function migration(): ScriptedRecord {
  const r = new ScriptedRecord(operator);
  const id = r.migrationId;
  const host = { publisher: 'host-agent@host-a' };
  let seq = 1;
  r.emit(coordinator, `ccm.evt.migration.${id}.requested`, { seq: seq++, workload: 'web-1' });
  r.emit(keyBroker, `ccm.evt.key.k-${id}.released`, {
    evidence: { source: 'aa'.repeat(24), target: 'bb'.repeat(24) },
    rules: [{ rule: 'same-measurement', ok: true }],
  });
  r.emit(hostAgent, `ccm.evt.transfer.${id}.started`, {}, host);
  for (let i = 1; i <= 5; i++)
    r.emit(hostAgent, `ccm.evt.transfer.${id}.progressed`, { bytesTransferred: i * 1_000_000 }, host);
  for (const step of STEPS) {
    const common = { step, attempt: 1, participant: 'host-agent', command: step };
    r.emit(coordinator, `ccm.evt.migration.${id}.step-started`, { seq: seq++, ...common, timeoutMs: 1 });
    r.emit(
      coordinator,
      `ccm.evt.migration.${id}.step-succeeded`,
      { seq: seq++, ...common, durationMs: 5 },
      { links: true },
    );
  }
  r.emit(hostAgent, `ccm.evt.transfer.${id}.completed`, { downtimeMs: 31 }, host);
  r.emit(
    coordinator,
    `ccm.evt.migration.${id}.finished`,
    { seq: seq++, phase: 'Succeeded', reason: 'done', durationMs: 9 },
    { links: true },
  );
  return r;
}

function makeStream(): StoredEvent[] {
  const out: StoredEvent[] = [];
  for (let m = 0; m < EVENTS / PER_MIGRATION; m++) {
    for (const e of migration().stored) {
      out.push({ streamSeq: out.length + 1, subject: e.subject, data: Buffer.from(String(e.data)) });
    }
  }
  return out;
}

/** Ed25519 verifications per second of a message the size of an average event's signed bytes. */
function ed25519PerSecond(bytes: number): number {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const msg = Buffer.alloc(bytes, 7);
  const sig = sign(null, msg, privateKey);
  let n = 0;
  const end = performance.now() + BENCH_SECONDS * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 200; i++) verify(null, msg, publicKey, sig);
    n += 200;
  }
  return n / BENCH_SECONDS;
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

const built = performance.now();
const stream = makeStream();
const avgBytes = stream.reduce((s, e) => s + e.data.length, 0) / stream.length;
console.log(
  `bench:audit  ${fmt(stream.length)} signed, chained events of ${fmt(stream.length / PER_MIGRATION)} migrations ` +
    `(avg ${fmt(avgBytes)} bytes) made in ${fmt(performance.now() - built)} ms`,
);

const ed = ed25519PerSecond(Math.round(avgBytes));

const t0 = performance.now();
const records = auditEvents(stream, { trust, streamFirstSeq: 1 });
const t1 = performance.now();
let steps = 0;
for (const r of records.values()) steps += buildTimeline(r).steps.length;
const t2 = performance.now();

const verdicts: Record<string, number> = {};
for (const r of records.values()) verdicts[r.verdict] = (verdicts[r.verdict] ?? 0) + 1;
const findings = [...records.values()].reduce((s, r) => s + r.findings.length, 0);

console.log(`  verify (signatures, entitlement, chains, cross-links): ${fmt(t1 - t0)} ms`);
console.log(`  replay (timelines of every migration, ${fmt(steps)} steps): ${fmt(t2 - t1)} ms`);
console.log(`  verdicts ${JSON.stringify(verdicts)}, findings ${findings}`);
console.log(
  `  replay+verify:          ${fmt((stream.length / (t2 - t0)) * 1000)} events/s   (goal ≥ 50,000)`,
);
console.log(`  Ed25519 verify alone:   ${fmt(ed)} verifications/s   (the bound: one per event)`);
console.log(`  share of the bound:     ${(((stream.length / (t2 - t0)) * 1000 * 100) / ed).toFixed(0)} %`);
