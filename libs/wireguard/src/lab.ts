import { run } from './exec.js';
import { configureDevice, addAddress, addRoute, linkUp, setPeers, type PeerSpec } from './device.js';
import { createInterface, type WgInterface } from './interface.js';
import { generateKeyPair, type WgKeyPair } from './keys.js';
import { createNetns, deleteNetns } from './netns.js';
import { intToIpv4, parseCidr } from './validate.js';

/** One lab node: a namespace on the underlay with a wireguard-go interface on the overlay. */
export interface LabNode {
  readonly id: string;
  readonly netns: string;
  readonly iface: WgInterface;
  readonly keys: WgKeyPair;
  /** Its underlay address and WireGuard port. */
  readonly endpoint: string;
  /** Its own overlay address (/32). */
  readonly overlayIp: string;
}

const LISTEN_PORT = 51820;
/** The underlay router's address on every node's link (a /32 of its own on each router-side veth). */
const ROUTER = '10.78.255.254';

/**
 * Nodes as network namespaces, each with a WireGuard interface (kernel where the module loads,
 * wireguard-go otherwise), joined by an underlay namespace that routes between them: every node has
 * a point-to-point link to it and one neighbour (the router), the router one neighbour per node.
 * Not a bridge: the kernel's ARP table is one for all namespaces (neighbour entries of every
 * namespace count against `net.ipv4.neigh.default.gc_thresh3`, 1024 by default), and a bridged
 * mesh of N nodes fills it with N·(N-1) entries: at 64 nodes the kernel logs "neighbor table
 * overflow" and drops packets for seconds (issue 11's 64-peer brownout). Routed, a lab holds about
 * 2·N entries. Names carry `tag` (use the pid) so parallel runs never collide; `destroy()` removes
 * every namespace and process, and is also run on SIGINT/SIGTERM.
 */
export class WgLab {
  readonly nodes = new Map<string, LabNode>();
  /** The namespace that routes between the nodes. */
  readonly underlay: string;
  private readonly namespaces: string[] = [];
  private readonly onSignal = (sig: NodeJS.Signals) => {
    void this.destroy().finally(() => process.kill(process.pid, sig));
  };

  private constructor(
    private readonly tag: string,
    readonly overlayCidr: string,
  ) {
    this.underlay = `ccmu-${tag}`;
  }

  /** A lab with an empty underlay; add nodes with {@link addNode}. */
  static async create(tag: string, overlayCidr = '10.99.0.0/24'): Promise<WgLab> {
    parseCidr(overlayCidr);
    const lab = new WgLab(tag, overlayCidr);
    process.once('SIGINT', lab.onSignal);
    process.once('SIGTERM', lab.onSignal);
    try {
      await createNetns(lab.underlay);
      lab.namespaces.push(lab.underlay);
      await run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'], { netns: lab.underlay });
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  /**
   * Adds node number `n` (1..500): underlay 10.78.x.y, overlay address `<overlay base>+n` unless
   * `ownAddress` is false (then whoever drives the node adds it), no peers yet.
   */
  async addNode(id: string, n: number, ownAddress = true): Promise<LabNode> {
    const netns = `ccm${id}-${this.tag}`;
    await createNetns(netns);
    this.namespaces.push(netns);
    const host = `v${n}-${this.tag}`.slice(0, 15);
    await run([
      'ip',
      'link',
      'add',
      'eth0',
      'netns',
      netns,
      'type',
      'veth',
      'peer',
      'name',
      host,
      'netns',
      this.underlay,
    ]);
    const under = `10.78.${Math.floor(n / 250)}.${(n % 250) + 1}`;
    const at = (ns: string, argv: string[]) => run(['ip', '-n', ns, ...argv]);
    await at(this.underlay, ['link', 'set', host, 'up']);
    await at(this.underlay, ['address', 'add', `${ROUTER}/32`, 'dev', host]);
    await at(this.underlay, ['route', 'add', `${under}/32`, 'dev', host]);
    await at(netns, ['address', 'add', `${under}/32`, 'dev', 'eth0']);
    await at(netns, ['link', 'set', 'eth0', 'up']);
    await at(netns, ['route', 'add', `${ROUTER}/32`, 'dev', 'eth0']);
    await at(netns, ['route', 'add', '10.78.0.0/16', 'via', ROUTER, 'dev', 'eth0']);
    const iface = await createInterface({ name: `wg${n}-${this.tag}`.slice(0, 15), netns });
    const keys = generateKeyPair();
    const overlayIp = intToIpv4(parseCidr(this.overlayCidr).network + n);
    try {
      await configureDevice(iface, { privateKey: keys.privateKey, listenPort: LISTEN_PORT });
      if (ownAddress) await addAddress(iface, `${overlayIp}/32`);
      await linkUp(iface);
      await addRoute(iface, this.overlayCidr);
    } catch (err) {
      await iface.destroy();
      throw err;
    }
    const node: LabNode = { id, netns, iface, keys, endpoint: `${under}:${LISTEN_PORT}`, overlayIp };
    this.nodes.set(id, node);
    return node;
  }

  /**
   * Every node a peer of every other, each allowed its own /32 plus `extra[nodeId]`; with
   * `persistentKeepaliveS` each node also sends a keepalive to every peer at once and then at that
   * interval (so every pair shakes hands).
   */
  async mesh(
    extra: Record<string, string[]> = {},
    opts: { persistentKeepaliveS?: number } = {},
  ): Promise<void> {
    const all = [...this.nodes.values()];
    await Promise.all(
      all.map((self) =>
        setPeers(
          self.iface,
          all
            .filter((p) => p !== self)
            .map((p): PeerSpec => ({
              publicKey: p.keys.publicKey,
              endpoint: p.endpoint,
              allowedIps: [`${p.overlayIp}/32`, ...(extra[p.id] ?? [])],
              persistentKeepaliveS: opts.persistentKeepaliveS,
            })),
        ),
      ),
    );
  }

  node(id: string): LabNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no lab node ${id}`);
    return n;
  }

  /** Removes every process and namespace of the lab; safe to call twice. */
  async destroy(): Promise<void> {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    const nodes = [...this.nodes.values()];
    this.nodes.clear();
    await Promise.allSettled(nodes.map((n) => n.iface.destroy()));
    const names = this.namespaces.splice(0);
    await Promise.allSettled(names.map((n) => deleteNetns(n)));
  }
}
