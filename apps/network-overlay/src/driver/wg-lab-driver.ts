import {
  addAddress,
  removeAddress,
  setPeers,
  startProber,
  type PeerSpec,
  type ProbePace,
  type WgLab,
} from '@ccm/wireguard';
import { type NodeSpec, type OverlayDriver, type Watch } from './driver.js';

/**
 * Real WireGuard on lab nodes (network namespaces with wireguard-go, libs/wireguard's WgLab): node
 * `vmId` is the lab node of that id, which made its own key as a guest would. Probes are HTTP GETs
 * from the observer's namespace; the workload stand-ins answer with their node's id.
 */
export class WgLabDriver implements OverlayDriver {
  constructor(private readonly lab: WgLab) {}

  /** The guest side of joining: its interface gets its node address (its key it made itself). */
  async joinNode(vmId: string, spec: NodeSpec): Promise<void> {
    const node = this.lab.node(vmId);
    if (node.keys.publicKey !== spec.publicKey) {
      throw new Error(`lab node ${vmId} has another WireGuard key than the admitted one`);
    }
    await addAddress(node.iface, `${spec.nodeIp}/32`);
  }

  async leaveNode(vmId: string): Promise<void> {
    const node = this.lab.node(vmId);
    const others = [...this.lab.nodes.values()].filter((n) => n !== node);
    await setPeers(
      node.iface,
      others.map((n) => ({ publicKey: n.keys.publicKey, remove: true })),
    );
  }

  setPeers(vmId: string, peers: readonly PeerSpec[]): Promise<void> {
    return setPeers(this.lab.node(vmId).iface, peers);
  }

  addAddress(vmId: string, ip: string): Promise<void> {
    return addAddress(this.lab.node(vmId).iface, `${ip}/32`);
  }

  removeAddress(vmId: string, ip: string): Promise<void> {
    return removeAddress(this.lab.node(vmId).iface, `${ip}/32`);
  }

  watch(fromVmId: string, ip: string, port: number, pace?: ProbePace): Watch {
    return startProber(this.lab.node(fromVmId).netns, ip, port, pace);
  }
}
