import { type MoveFigures } from '@ccm/contracts';
import { type PeerSpec, type ProbeSample } from '@ccm/wireguard';
import { type OverlayDriver } from '../driver/driver.js';

/** One peer of an overlay as every other node must see it. */
export interface MeshPeer {
  readonly vmId: string;
  readonly publicKey: string;
  readonly endpoint?: string;
  readonly nodeIp: string;
  /** The workload /32s this peer holds now. */
  readonly workloadIps: readonly string[];
}

/** The allowed IPs of a peer: its node address and the workloads it holds, each a /32. */
export function allowedIpsOf(p: MeshPeer): string[] {
  return [p.nodeIp, ...p.workloadIps].map((ip) => `${ip}/32`);
}

/** The peer entry other nodes hold for `p`. */
export function peerSpec(p: MeshPeer): PeerSpec {
  return {
    publicKey: p.publicKey,
    endpoint: p.endpoint,
    allowedIps: allowedIpsOf(p),
    persistentKeepaliveS: 25,
  };
}

/** Every peer entry node `self` needs: all the other peers of the overlay. */
export function peerSpecsFor(self: string, peers: readonly MeshPeer[]): PeerSpec[] {
  return peers.filter((p) => p.vmId !== self).map(peerSpec);
}

export interface MoveRequest {
  readonly ip: string;
  readonly from: string;
  readonly to: string;
  readonly port: number;
  /** The overlay's peers as they are after the move (`ip` among `to`'s workload IPs). */
  readonly peers: readonly MeshPeer[];
  /** How long to wait for the target's first answer before replying without a brownout figure. */
  readonly answerWaitMs: number;
}

/** A peer other than the target (a third one when there is one) to probe the workload from. */
export function observerFor(peers: readonly MeshPeer[], from: string, to: string): string | undefined {
  return (peers.find((p) => p.vmId !== from && p.vmId !== to) ?? peers.find((p) => p.vmId === from))?.vmId;
}

/**
 * Moves a workload's /32 from one peer to another: the target guest adds the address, every node
 * changes the two peers' allowed IPs in one configuration step each (all nodes at once), the source
 * guest drops the address. A probe from an observer node runs throughout and gives the brownout.
 */
export async function moveAddress(driver: OverlayDriver, req: MoveRequest): Promise<MoveFigures> {
  // No wait for an answer, no observer: its probes could not see the target answer in time, and
  // starting and stopping them would only lengthen the move (inside a container's blackout window).
  const observer = req.answerWaitMs > 0 ? observerFor(req.peers, req.from, req.to) : undefined;
  const watch = observer === undefined ? undefined : driver.watch(observer, req.ip, req.port);
  // The observer's first probe runs before anything changes, so a source that still answers is seen.
  const ready = performance.now() + req.answerWaitMs;
  while (watch && watch.samples.length === 0 && performance.now() < ready) {
    await new Promise((r) => setTimeout(r, 2));
  }
  const t0 = performance.now();
  const moved = req.peers.filter((p) => p.vmId === req.from || p.vmId === req.to).map(peerSpec);
  await driver.addAddress(req.to, req.ip);
  await Promise.all(
    req.peers.map((n) =>
      driver.setPeers(
        n.vmId,
        moved.filter((s) => s.publicKey !== n.publicKey),
      ),
    ),
  );
  await driver.removeAddress(req.from, req.ip).catch(() => undefined);
  const cutOverMs = performance.now() - t0;
  const base = { cutOverMs, peersUpdated: req.peers.length };
  if (!watch) return { ...base, brownoutMs: null, sourceAnswered: false };
  const deadline = performance.now() + req.answerWaitMs;
  while (!watch.samples.some((s) => s.by === req.to) && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 2));
  }
  return { ...base, ...brownout(await watch.stop(), req.from, req.to, t0) };
}

/**
 * The brownout in `samples`: from the last answer by `from` to the first by `to` after it; when
 * `from` never answered (frozen, as in a container migration), from `t0`.
 */
export function brownout(
  samples: readonly ProbeSample[],
  from: string,
  to: string,
  t0: number,
): Pick<MoveFigures, 'brownoutMs' | 'sourceAnswered'> {
  const first = samples.findIndex((s) => s.by === to);
  let last: ProbeSample | undefined;
  for (let i = (first < 0 ? samples.length : first) - 1; i >= 0; i--) {
    if (samples[i].by === from) {
      last = samples[i];
      break;
    }
  }
  const brownoutMs = first < 0 ? null : Math.max(0, samples[first].t - (last?.t ?? t0));
  return { brownoutMs, sourceAnswered: last !== undefined };
}
