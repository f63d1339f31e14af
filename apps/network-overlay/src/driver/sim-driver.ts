import {
  applyPeerSpecs,
  cidrContains,
  CONNECTED,
  ipv4ToInt,
  parseCidr,
  type PeerEntry,
  type PeerSpec,
  startSampling,
} from '@ccm/wireguard';
import { type NodeSpec, type OverlayDriver, type Watch } from './driver.js';

interface SimNode {
  readonly spec: NodeSpec;
  readonly peers: Map<string, PeerEntry>;
  readonly addresses: Set<string>;
}

/**
 * The overlay's simulated nodes: an in-memory peer table per node with WireGuard's rules. An
 * allowed-IPs entry belongs to one peer of an interface at a time (giving it to another takes it
 * away), a packet goes to the peer whose allowed IPs hold the destination (longest prefix), and the
 * receiver accepts it only when the sender's peer entry there allows the source address.
 */
export class SimOverlayDriver implements OverlayDriver {
  private readonly nodes = new Map<string, SimNode>();
  /** Network faults a test injects (`from→to` paths cut, `vmId ip` workloads silent): node state rebuilt from the rows keeps them. */
  private readonly cutPaths = new Set<string>();
  private readonly silent = new Set<string>();
  /** Workload addresses whose service answers no HTTP (a probe sees the connection accepted only). */
  private readonly noHttp = new Set<string>();
  /** Gap between two probes of a watch. */
  constructor(private readonly probeGapMs = 1) {}

  joinNode(vmId: string, spec: NodeSpec): Promise<void> {
    const existing = this.nodes.get(vmId);
    if (existing?.spec.publicKey === spec.publicKey) return Promise.resolve();
    this.nodes.set(vmId, { spec, peers: new Map(), addresses: new Set([spec.nodeIp]) });
    return Promise.resolve();
  }

  restoreNode(vmId: string, spec: NodeSpec, peers: readonly PeerSpec[], addresses: readonly string[]) {
    const node: SimNode = { spec, peers: new Map(), addresses: new Set([spec.nodeIp, ...addresses]) };
    for (const p of peers) {
      if (!p.remove)
        node.peers.set(p.publicKey, { endpoint: p.endpoint, allowedIps: [...(p.allowedIps ?? [])] });
    }
    this.nodes.set(vmId, node);
    return Promise.resolve();
  }

  leaveNode(vmId: string): Promise<void> {
    this.nodes.delete(vmId);
    return Promise.resolve();
  }

  setPeers(vmId: string, peers: readonly PeerSpec[]): Promise<void> {
    applyPeerSpecs(this.node(vmId).peers, peers);
    return Promise.resolve();
  }

  addAddress(vmId: string, ip: string): Promise<void> {
    this.node(vmId).addresses.add(ip);
    return Promise.resolve();
  }

  removeAddress(vmId: string, ip: string): Promise<void> {
    this.node(vmId).addresses.delete(ip);
    return Promise.resolve();
  }

  /** A fault: packets from node `fromVmId` no longer reach node `toVmId` (or undo it with `cut: false`). */
  cutPath(fromVmId: string, toVmId: string, cut = true): void {
    if (cut) this.cutPaths.add(`${fromVmId}→${toVmId}`);
    else this.cutPaths.delete(`${fromVmId}→${toVmId}`);
  }

  /** A fault: the workload at `ip` on node `vmId` stops answering (or answers again with `on: false`). */
  silence(vmId: string, ip: string, on = true): void {
    if (on) this.silent.add(`${vmId} ${ip}`);
    else this.silent.delete(`${vmId} ${ip}`);
  }

  /** The workload at `ip` answers no HTTP, as a container's own service (or HTTP again with `on: false`). */
  speaksNoHttp(ip: string, on = true): void {
    if (on) this.noHttp.add(ip);
    else this.noHttp.delete(ip);
  }

  /** Which node answers `ip` when node `fromVmId` sends to it, or undefined when nothing does. */
  route(fromVmId: string, ip: string): string | undefined {
    const to = this.routeByTables(fromVmId, ip);
    if (to === undefined || this.silent.has(`${to} ${ip}`)) return undefined;
    return to !== fromVmId && this.cutPaths.has(`${fromVmId}→${to}`) ? undefined : to;
  }

  private routeByTables(fromVmId: string, ip: string): string | undefined {
    const from = this.nodes.get(fromVmId);
    if (!from) return undefined;
    if (from.addresses.has(ip)) return fromVmId;
    const dst = ipv4ToInt(ip);
    let best: { key: string; prefix: number } | undefined;
    for (const [key, peer] of from.peers) {
      for (const c of peer.allowedIps) {
        const cidr = parseCidr(c, false);
        if (cidrContains(cidr, dst) && (!best || cidr.prefix > best.prefix))
          best = { key, prefix: cidr.prefix };
      }
    }
    if (!best) return undefined;
    const [toId, to] = [...this.nodes].find(([, n]) => n.spec.publicKey === best.key) ?? [];
    if (!toId || !to || !to.addresses.has(ip)) return undefined;
    const back = to.peers.get(from.spec.publicKey);
    const src = ipv4ToInt(from.spec.nodeIp);
    return back?.allowedIps.some((c) => cidrContains(parseCidr(c, false), src)) ? toId : undefined;
  }

  /** A node's peer table, for tests: public key → allowed IPs. */
  peersOf(vmId: string): Map<string, string[]> {
    return new Map([...this.node(vmId).peers].map(([k, p]) => [k, [...p.allowedIps]]));
  }

  watch(fromVmId: string, ip: string): Watch {
    return startSampling(this.probeGapMs, () => {
      const by = this.route(fromVmId, ip);
      return by !== undefined && this.noHttp.has(ip) ? CONNECTED : by;
    });
  }

  private node(vmId: string): SimNode {
    const n = this.nodes.get(vmId);
    if (!n) throw new Error(`sim overlay: node ${vmId} has not joined`);
    return n;
  }
}
