import {
  addAddress,
  addRoute,
  applyPeerSpecs,
  configureDevice,
  createInterface,
  formatCidr,
  ipv4ToInt,
  linkUp,
  parseCidr,
  removeAddress,
  run,
  setPeers,
  setPeersArgv,
  showDevice,
  startProber,
  startSampling,
  type PeerEntry,
  type PeerSpec,
  type ProbePace,
  type ProbeSample,
  type WgInterface,
  type WgMode,
} from '@ccm/wireguard';

/** The interface as the guest brings it up: its own private key (never leaves the guest). */
export interface InterfaceSpec {
  readonly privateKey: string;
  readonly nodeIp: string;
  readonly overlayCidr: string;
}

/** Probes running from this guest until stopped. */
export interface GuestProbe {
  readonly samples: readonly ProbeSample[];
  stop(): Promise<ProbeSample[]>;
}

/** The guest's overlay interface: one per guest. Every call validates its input before it acts. */
export interface GuestOverlayDriver {
  up(spec: InterfaceSpec): Promise<void>;
  setPeers(peers: readonly PeerSpec[]): Promise<void>;
  addAddress(ip: string): Promise<void>;
  removeAddress(ip: string): Promise<void>;
  /** Peers as the interface holds them now. */
  peers(): Promise<Array<{ publicKey: string; endpoint?: string; allowedIps: string[] }>>;
  /** Removes the interface (and ends its wireguard-go); absent is fine. */
  down(): Promise<void>;
  /** Probes ip:port at `pace` (default: a brownout's, BROWNOUT_PACE); each sample names who answered. */
  probe(ip: string, port: number, pace?: Partial<ProbePace>): GuestProbe;
}

/**
 * An in-memory interface with WireGuard's peer rules (libs/wireguard applyPeerSpecs). It carries no
 * packets: a probe is answered by this guest (`self`) while it holds the address, by nobody otherwise.
 */
export class SimGuestOverlay implements GuestOverlayDriver {
  private readonly table = new Map<string, PeerEntry>();
  private readonly addresses = new Set<string>();

  constructor(
    private readonly self: string,
    private readonly probeGapMs = 1,
  ) {}

  up(spec: InterfaceSpec): Promise<void> {
    parseCidr(spec.overlayCidr);
    this.addresses.add(spec.nodeIp);
    return Promise.resolve();
  }

  setPeers(peers: readonly PeerSpec[]): Promise<void> {
    setPeersArgv('sim0', peers); // validates every field as a real `wg set` would need
    applyPeerSpecs(this.table, peers);
    return Promise.resolve();
  }

  addAddress(ip: string): Promise<void> {
    ipv4ToInt(ip);
    this.addresses.add(ip);
    return Promise.resolve();
  }

  removeAddress(ip: string): Promise<void> {
    this.addresses.delete(ip);
    return Promise.resolve();
  }

  peers() {
    return Promise.resolve([...this.table].map(([publicKey, p]) => ({ publicKey, ...p })));
  }

  down(): Promise<void> {
    this.table.clear();
    this.addresses.clear();
    return Promise.resolve();
  }

  probe(ip: string, _port: number, pace: Partial<ProbePace> = {}): GuestProbe {
    return startSampling(pace.gapMs ?? this.probeGapMs, () =>
      this.addresses.has(ip) ? this.self : undefined,
    );
  }
}

/**
 * A real WireGuard interface in the guest's own network namespace, through libs/wireguard: kernel
 * WireGuard where the module loads, wireguard-go otherwise. The private key reaches `wg` through a
 * 0600 file removed at once (libs/wireguard configureDevice), never argv or the bus.
 */
export class WireGuardGuestOverlay implements GuestOverlayDriver {
  private iface?: WgInterface;

  constructor(
    private readonly name: string,
    private readonly listenPort: number,
    private readonly mode: WgMode,
  ) {}

  async up(spec: InterfaceSpec): Promise<void> {
    const cidr = formatCidr(parseCidr(spec.overlayCidr));
    ipv4ToInt(spec.nodeIp);
    if (!this.iface) {
      // An interface of this name left by an earlier run of the agent is the guest's own: replace it.
      await run(['ip', 'link', 'del', this.name]).catch(() => undefined);
      const iface = await createInterface({ name: this.name }, { mode: this.mode });
      try {
        await configureDevice(iface, { privateKey: spec.privateKey, listenPort: this.listenPort });
        await linkUp(iface);
      } catch (err) {
        await iface.destroy();
        throw err;
      }
      this.iface = iface;
    }
    await addAddress(this.iface, `${spec.nodeIp}/32`);
    await addRoute(this.iface, cidr);
  }

  setPeers(peers: readonly PeerSpec[]): Promise<void> {
    return setPeers(this.need(), peers);
  }

  /**
   * Holds a workload /32 on the interface, unless a container of this guest serves it: the guest then
   * routes it into the container's veth (apps/guest-agent/src/runc/netns.ts) and forwards between the
   * interface and the veth; the address on the interface would take the packets into the guest's own
   * stack instead (the local table wins), which answers the container's connections with resets.
   */
  async addAddress(ip: string): Promise<void> {
    const iface = this.need();
    ipv4ToInt(ip);
    if ((await routedTo(ip)).some((dev) => dev !== iface.name)) return;
    await addAddress(iface, `${ip}/32`);
  }

  removeAddress(ip: string): Promise<void> {
    return removeAddress(this.need(), `${ip}/32`);
  }

  async peers() {
    const state = await showDevice(this.need());
    return state.peers.map((p) => ({
      publicKey: p.publicKey,
      ...(p.endpoint ? { endpoint: p.endpoint } : {}),
      allowedIps: p.allowedIps,
    }));
  }

  async down(): Promise<void> {
    const iface = this.iface;
    this.iface = undefined;
    await iface?.destroy();
  }

  probe(ip: string, port: number, pace: Partial<ProbePace> = {}): GuestProbe {
    return startProber(undefined, ip, port, pace);
  }

  private need(): WgInterface {
    if (!this.iface) throw new Error('the overlay interface is not up');
    return this.iface;
  }
}

/** The devices the guest's main table routes `ip`/32 to, as a host route of its own (`ip route show exact`). */
export async function routedTo(ip: string): Promise<string[]> {
  const out = await run(['ip', '-o', '-4', 'route', 'show', 'exact', `${ip}/32`]);
  return out
    .split('\n')
    .map((l) => /\bdev (\S+)/.exec(l)?.[1])
    .filter((d): d is string => d !== undefined);
}
