/**
 * Overlay benchmark: the network-overlay service (real nats-server, Postgres, the service in this
 * process) driving real wireguard-go peers in network namespaces (libs/wireguard's WgLab). For each
 * overlay size N it admits N peers, serves the workload stand-in in peer 1 and peer 2, and moves the
 * workload's /32 from peer 1 to peer 2 (`cut-over`) and back (`revert-cut-over`) RUNS times while a
 * client in peer 3 probes it every 5 ms (with 2 peers there is no third one: the client is in peer 1,
 * so its probes are local while peer 1 holds the address). Prints p50/p99 of:
 * - cut-over: the service's `cutOverMs` (move started → the target holds the address, every peer's
 *   allowed IPs changed, the source dropped it);
 * - reply: the step request's round trip (includes the wait for the observer to see the target);
 * - brownout: the service's own figure (its observer's probes) and the client's (last answer by the
 *   source → first answer by the target, in the client's samples).
 * Asserts nothing.
 *
 * Run: `npm run bench:overlay` (builds, then node dist/apps/network-overlay/src/bench/overlay.bench.js
 * [--json]); needs root, /dev/net/tun, ip, wg and wireguard-go (else it prints why and exits 0).
 * It lives in the app, not in tools/bench, because it runs the service in this process with a driver
 * of its own (the lab driver wrapped to time each node change), which a service process cannot take.
 * Environment: OVERLAY_BENCH_PEERS (comma list of 2..200, default 2,16,64, the sizes of issue 11),
 * OVERLAY_BENCH_RUNS (default 10), OVERLAY_BENCH_TRACE=1 (per move: when each node change ran and what
 * the client saw, relative to the request). A 64-peer size takes under a minute here.
 */
import { parseArgs } from 'node:util';
import { type ChildProcess } from 'node:child_process';
import { pollUntil } from '@ccm/testing';
import {
  brownoutOf,
  netnsSupport,
  serveName,
  showDevice,
  startProber,
  WgLab,
  type PeerSpec,
  type ProbePace,
  type Prober,
  type ProbeSample,
} from '@ccm/wireguard';
import { type NodeSpec, type OverlayDriver, type Watch } from '../driver/driver.js';
import { WgLabDriver } from '../driver/wg-lab-driver.js';
import { OverlayFixture } from '../testing/overlay-fixture.js';

const PEERS = (process.env['OVERLAY_BENCH_PEERS'] ?? '2,16,64').split(',').map(Number);
const RUNS = Number(process.env['OVERLAY_BENCH_RUNS'] ?? 10);
if (PEERS.some((n) => !Number.isInteger(n) || n < 2 || n > 200) || !Number.isInteger(RUNS) || RUNS < 1) {
  throw new Error(
    'OVERLAY_BENCH_PEERS must list integers 2..200 and OVERLAY_BENCH_RUNS be a positive integer',
  );
}
const PORT = 8080;
/** OVERLAY_BENCH_TRACE=1: per move, a timeline of the request, every node change and the client's samples. */
const TRACE = process.env['OVERLAY_BENCH_TRACE'] === '1';

/** When each node change ran (ms on this process's clock), for the trace. */
interface NodeCall {
  readonly what: string;
  readonly start: number;
  end?: number;
}

/** The lab driver, recording each call's start and end. */
class TracingDriver implements OverlayDriver {
  readonly calls: NodeCall[] = [];
  constructor(private readonly inner: WgLabDriver) {}
  private async timed<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const call: NodeCall = { what, start: performance.now() };
    this.calls.push(call);
    try {
      return await fn();
    } finally {
      call.end = performance.now();
    }
  }
  joinNode(vmId: string, node: NodeSpec) {
    return this.timed(`join ${vmId}`, () => this.inner.joinNode(vmId, node));
  }
  leaveNode(vmId: string) {
    return this.timed(`leave ${vmId}`, () => this.inner.leaveNode(vmId));
  }
  setPeers(vmId: string, peers: readonly PeerSpec[]) {
    return this.timed(`set ${vmId}`, () => this.inner.setPeers(vmId, peers));
  }
  addAddress(vmId: string, ip: string) {
    return this.timed(`add-address ${vmId}`, () => this.inner.addAddress(vmId, ip));
  }
  removeAddress(vmId: string, ip: string) {
    return this.timed(`remove-address ${vmId}`, () => this.inner.removeAddress(vmId, ip));
  }
  watch(fromVmId: string, ip: string, port: number, pace?: ProbePace): Watch {
    this.calls.push({ what: `watch from ${fromVmId}`, start: performance.now() });
    return this.inner.watch(fromVmId, ip, port, pace);
  }
}

/** Samples as runs of one answerer (`-`: no answer), each with its first and last time relative to `t0`. */
function runsOf(samples: readonly ProbeSample[], t0: number): string {
  const out: string[] = [];
  let i = 0;
  while (i < samples.length) {
    let j = i;
    while (j + 1 < samples.length && samples[j + 1].by === samples[i].by) j++;
    const by = samples[i].by ?? '-';
    out.push(`${by}x${j - i + 1}@${(samples[i].t - t0).toFixed(0)}..${(samples[j].t - t0).toFixed(0)}`);
    i = j + 1;
  }
  return out.join(' ');
}

/** The node calls since `from` (index), relative to `t0`: the first and last of each kind. */
function callsOf(calls: readonly NodeCall[], from: number, t0: number): string {
  const groups = new Map<string, NodeCall[]>();
  for (const c of calls.slice(from)) {
    const kind = c.what.startsWith('set ') ? 'set(all)' : c.what;
    groups.set(kind, [...(groups.get(kind) ?? []), c]);
  }
  const rel = (v: number | undefined) => (v === undefined ? '?' : (v - t0).toFixed(0));
  return [...groups]
    .map(([k, cs]) => {
      const start = Math.min(...cs.map((c) => c.start));
      const end = Math.max(...cs.map((c) => c.end ?? Number.NaN));
      return `${k}${cs.length > 1 ? `x${cs.length}` : ''} ${rel(start)}..${rel(end)}`;
    })
    .join(', ');
}

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
    const driver = new TracingDriver(new WgLabDriver(lab));
    f = await OverlayFixture.start(driver, 1, { CCM_OVERLAY_ANSWER_WAIT_MS: '5000' });
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
    client = startProber(lab.node(c).netns, ip, PORT, { timeoutMs: 100, gapMs: 5 });
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
        const callMark = driver.calls.length;
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
        if (TRACE) {
          const around = probes.samples.filter((s) => s.t >= t0 - 300);
          const dev = await showDevice(lab.node(c).iface);
          const hs = (vm: string) => {
            const p = dev.peers.find((q) => q.publicKey === lab.node(vm).keys.publicKey);
            return p?.latestHandshakeMs === undefined
              ? 'none'
              : `${((Date.now() - p.latestHandshakeMs) / 1000).toFixed(0)}s ago`;
          };
          console.log(
            `[trace ${n} ${verb} ${r}] load ${(await import('node:os')).loadavg()[0].toFixed(1)} reply ${out.replyMs.at(-1)!.toFixed(0)} brownout svc ${figures.brownoutMs ?? 'null'} client ${seen?.toFixed(1) ?? 'none'}`,
          );
          console.log(`  nodes: ${callsOf(driver.calls, callMark, t0)}`);
          console.log(`  client ${c} (t=0 request): ${runsOf(around, t0)}`);
          console.log(`  client's handshakes: with ${from} ${hs(from)}, with ${to} ${hs(to)}`);
        }
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
