import { type PeerSpec, type ProbePace, type ProbeSample } from '@ccm/wireguard';

/** Nest token of the {@link OverlayDriver} the service uses. */
export const OVERLAY_DRIVER = Symbol.for('ccm.network-overlay.driver');

/** What a node (a guest's WireGuard interface) is when it joins: only public facts. */
export interface NodeSpec {
  readonly publicKey: string;
  readonly nodeIp: string;
  readonly overlayCidr: string;
  readonly endpoint?: string;
}

/** Probes running from one node until stopped. */
export interface Watch {
  stop(): Promise<ProbeSample[]>;
  readonly samples: readonly ProbeSample[];
}

/**
 * The per-node agent API the overlay drives. A node is a confidential VM's WireGuard interface; the
 * guest side (its key, its addresses) belongs to the guest, so the driver never sees a private key.
 * Implementations: the in-memory sim, and WireGuard through libs/wireguard on lab namespaces.
 */
export interface OverlayDriver {
  /** Node `vmId` has its interface up with its node address (the guest made it with its own key). */
  joinNode(vmId: string, node: NodeSpec): Promise<void>;
  /** Node `vmId` leaves: its interface loses every peer. */
  leaveNode(vmId: string): Promise<void>;
  /** Adds, changes or removes peers on node `vmId` in one configuration step. */
  setPeers(vmId: string, peers: readonly PeerSpec[]): Promise<void>;
  /** The guest side: add or remove a workload address (/32) on node `vmId`'s interface. */
  addAddress(vmId: string, ip: string): Promise<void>;
  removeAddress(vmId: string, ip: string): Promise<void>;
  /**
   * Probes ip:port from node `fromVmId` at `pace` (default: a brownout's, BROWNOUT_PACE); each sample
   * names the node that answered.
   */
  watch(fromVmId: string, ip: string, port: number, pace?: ProbePace): Watch;
  /**
   * Only a driver whose nodes live in this process (the sim): sets node `vmId` to exactly this
   * interface, these peers and these workload addresses. The overlay calls it from its rows before
   * every change and probe, so a restarted replica, or one of several, acts on the nodes as the rows
   * say and not on an empty or stale memory. Real nodes keep their state themselves.
   */
  restoreNode?(
    vmId: string,
    node: NodeSpec,
    peers: readonly PeerSpec[],
    addresses: readonly string[],
  ): Promise<void>;
}
