/**
 * Overlay benchmark: the network-overlay service (real nats-server, Postgres, the service in this
 * process) driving real wireguard-go peers in network namespaces (libs/wireguard's WgLab). For each
 * overlay size N it admits N peers, serves the workload stand-in in peer 1 and peer 2, and moves the
 * workload's /32 from peer 1 to peer 2 (`cut-over`) and back (`revert-cut-over`) RUNS times while a
 * client in peer 3 probes it back to back (with 2 peers there is no third one: the client is in peer 1,
 * so its probes are local while peer 1 holds the address). Prints p50/p99 of:
 * - cut-over: the service's `cutOverMs` (move started → the target holds the address, every peer's
 *   allowed IPs changed, the source dropped it);
 * - reply: the step request's round trip (includes the wait for the observer to see the target);
 * - brownout: the service's own figure (its observer's probes) and the client's (last answer by the
 *   source → first answer by the target, in the client's samples).
 * Asserts nothing.
 *
 * Run: `npm run bench:overlay` (builds, then node dist/tools/bench/overlay.bench.js [--json]); needs
 * root, /dev/net/tun, ip, wg and wireguard-go (else it prints why and exits 0).
 * Environment: OVERLAY_BENCH_PEERS (comma list of 2..200, default 2,16,64, the sizes of issue 11),
 * OVERLAY_BENCH_RUNS (default 10). A 64-peer size takes a few minutes (the client may wait up to a minute).
 */
import { parseArgs } from 'node:util';
import { type ChildProcess } from 'node:child_process';
import { pollUntil } from '@ccm/testing';
import { brownoutOf, netnsSupport, serveName, startProber, WgLab, type Prober } from '@ccm/wireguard';
import { WgLabDriver } from '../../apps/network-overlay/src/driver/wg-lab-driver.js';
import { OverlayFixture } from '../../apps/network-overlay/src/testing/overlay-fixture.js';

const PEERS = (process.env['OVERLAY_BENCH_PEERS'] ?? '2,16,64').split(',').map(Number);
const RUNS = Number(process.env['OVERLAY_BENCH_RUNS'] ?? 10);
if (PEERS.some((n) => !Number.isInteger(n) || n < 2 || n > 200) || !Number.isInteger(RUNS) || RUNS < 1) {
  throw new Error(
    'OVERLAY_BENCH_PEERS must list integers 2..200 and OVERLAY_BENCH_RUNS be a positive integer',
  );
}
const PORT = 8080;

function percentile(values: number[], p: number): number {
  if (!values.length) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

interface Figures {
  cutOverMs: number[];
  replyMs: number[];
  serviceBrownoutMs: number[];
  clientBrownoutMs: number[];
  /** Moves whose brownout one of the two probers could not see (reported, not hidden). */
  unmeasured: number;
}

interface MoveReply {
  cutOverMs?: number;
  brownoutMs?: number | null;
  revert?: { cutOverMs: number; brownoutMs: number | null };
  message?: string;
}

const id = (i: number) => `p${String(i).padStart(3, '0')}`;

async function oneSize(n: number, index: number): Promise<Figures> {
  const cidr = `10.${100 + index}.0.0/24`;
  const overlayId = `bench-${n}`;
  const lab = await WgLab.create(`b${process.pid % 10000}${index}`, cidr);
  const servers: ChildProcess[] = [];
  let client: Prober | undefined;
  let f: OverlayFixture | undefined;
  const out: Figures = {
    cutOverMs: [],
    replyMs: [],
    serviceBrownoutMs: [],
    clientBrownoutMs: [],
    unmeasured: 0,
  };
  try {
    for (let i = 1; i <= n; i++) await lab.addNode(id(i), i, false);
    f = await OverlayFixture.start(new WgLabDriver(lab), 1, { CCM_OVERLAY_ANSWER_WAIT_MS: '5000' });
    await f.send('operator', 'create-overlay', { overlayId, cidr });
    for (const node of lab.nodes.values()) {
      const admission = await f.admission(node.id, node.keys.publicKey, { endpoint: node.endpoint });
      await f.send('operator', 'admit-peer', { overlayId, admission });
    }
    // The client: a third peer, or with 2 peers the source (the only peer other than the target).
    const [a, b, c] = [id(1), id(2), n >= 3 ? id(3) : id(1)];
    servers.push(await serveName(lab.node(a).netns, a, PORT), await serveName(lab.node(b).netns, b, PORT));
    const workloadId = `w-bench-${n}`;
    const { ip } = (await f.send('operator', 'assign-workload', {
      overlayId,
      workloadId,
      vmId: a,
      port: PORT,
    })) as {
      ip: string;
    };
    client = startProber(lab.node(c).netns, ip, PORT, { timeoutMs: 100, gapMs: 1 });
    const probes = client;
    const answeredBy = async (by: string, from: number) =>
      pollUntil(
        `client answered by ${by}`,
        () => probes.samples.slice(from).filter((s) => s.by === by).length,
        (k) => k >= 3,
        {
          timeoutMs: 60_000,
        },
      );
    await answeredBy(a, 0);
    for (let r = 0; r < RUNS; r++) {
      for (const [verb, from, to] of [
        ['cut-over', a, b],
        ['revert-cut-over', b, a],
      ] as const) {
        const mark = probes.samples.length;
        const cmd = f.step(
          'cut-over',
          `bench-${n}-${r}`,
          workloadId,
          { targetVmId: b },
          verb === 'cut-over' ? 'action' : 'compensation',
        );
        const t0 = performance.now();
        const reply = (await f.send('saga-coordinator', verb, cmd)) as MoveReply;
        out.replyMs.push(performance.now() - t0);
        const figures = verb === 'cut-over' ? reply : reply.revert;
        if (figures?.cutOverMs === undefined)
          throw new Error(`${verb} failed: ${reply.message ?? JSON.stringify(reply)}`);
        out.cutOverMs.push(figures.cutOverMs);
        await answeredBy(to, mark);
        const seen = brownoutOf(probes.samples.slice(mark), from, to);
        if (figures.brownoutMs === null || figures.brownoutMs === undefined || seen === undefined)
          out.unmeasured++;
        if (typeof figures.brownoutMs === 'number') out.serviceBrownoutMs.push(figures.brownoutMs);
        if (seen !== undefined) out.clientBrownoutMs.push(seen);
      }
    }
  } finally {
    await client?.stop();
    for (const s of servers) s.kill();
    await f?.stop();
    await lab.destroy();
  }
  return out;
}

const fmt = (v: number[]) =>
  `p50 ${percentile(v, 50).toFixed(1)} ms  p99 ${percentile(v, 99).toFixed(1)} ms  (n=${v.length})`;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { json: { type: 'boolean' } } });
  const support = await netnsSupport();
  if (!support.ok) {
    console.log(`bench:overlay skipped: ${support.reason}`);
    return;
  }
  const results: Array<{ peers: number } & Figures> = [];
  for (const [i, n] of PEERS.entries()) {
    const r = await oneSize(n, i);
    results.push({ peers: n, ...r });
    if (!values.json) {
      console.log(`wireguard-go overlay, ${n} peers, ${RUNS} cut-overs + ${RUNS} reverts:`);
      console.log(`  cut-over (every peer updated)  ${fmt(r.cutOverMs)}`);
      console.log(`  step reply round trip          ${fmt(r.replyMs)}`);
      console.log(`  brownout, overlay's observer   ${fmt(r.serviceBrownoutMs)}`);
      console.log(`  brownout, client in peer ${n >= 3 ? 3 : 1}     ${fmt(r.clientBrownoutMs)}`);
      if (r.unmeasured) console.log(`  moves without a brownout figure: ${r.unmeasured}`);
    }
  }
  if (values.json) {
    const p = (v: number[]) => ({ p50: percentile(v, 50), p99: percentile(v, 99), n: v.length });
    console.log(
      JSON.stringify(
        results.map((r) => ({
          peers: r.peers,
          runs: RUNS,
          cutOverMs: p(r.cutOverMs),
          replyMs: p(r.replyMs),
          serviceBrownoutMs: p(r.serviceBrownoutMs),
          clientBrownoutMs: p(r.clientBrownoutMs),
          unmeasured: r.unmeasured,
        })),
      ),
    );
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
