import { type ChildProcess } from 'node:child_process';
import { subjects } from '@ccm/contracts';
import { loadIdentity } from '@ccm/keys';
import { guestClient, ip, overlayAdmission, startGuest, type GuestProcess } from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { type LocalStack } from '../stack/stack.js';
import { type SendAs } from './container-migration.js';

/** Where the demo's client node sits: its WireGuard interface in the root namespace, its endpoint. */
export interface ClientNodeSpec {
  /** The root namespace's address on the hosts' segment (the guests send there). */
  readonly host: string;
  readonly port: number;
  readonly iface: string;
}

/** The client's overlay node as the demo runs it. */
export interface ClientNode {
  readonly vmId: string;
  /** Its address on the overlay. */
  readonly nodeIp: string;
  /** Stops its guest-agent and removes its interface (safe to call twice). */
  stop(): Promise<void>;
}

export const CLIENT_VM = 'demo-client';

/**
 * The demo's TCP client outside both guests, as in the lab (tools/guest-image/runc-lab.ts): a
 * guest-agent process in this (the root) namespace with its own WireGuard interface (kernel WireGuard
 * where the module loads, wireguard-go otherwise), admitted to `overlayId` on a statement signed with
 * the stack's key-broker identity for its key and endpoint: it is no confidential VM and has no
 * evidence to attest. A socket of the demo then reaches the overlay's addresses through it.
 */
export async function startClientNode(
  stack: LocalStack,
  operator: NatsConnection,
  send: SendAs,
  overlayId: string,
  spec: ClientNodeSpec,
  children: Set<ChildProcess>,
): Promise<ClientNode> {
  const g = await guestClient(operator, stack.keysDir);
  const endpoint = `${spec.host}:${spec.port}`;
  let agent: GuestProcess | undefined;
  const stop = async () => {
    if (agent) children.delete(agent.child);
    await agent?.stop();
    agent = undefined;
    ip('link', 'del', spec.iface);
  };
  try {
    agent = await startGuest({ env: (extra = {}) => ({ ...stack.env, ...extra }) }, CLIENT_VM, g.send, {
      CCM_GUEST_OVERLAY_DRIVER: 'wireguard',
      CCM_GUEST_OVERLAY_INTERFACE: spec.iface,
      CCM_GUEST_OVERLAY_PORT: String(spec.port),
      CCM_GUEST_OVERLAY_ENDPOINT: endpoint,
    });
    children.add(agent.child);
    const key = (await g.send(CLIENT_VM, 'identity', {})).publicKey as string;
    const admission = overlayAdmission(await loadIdentity(stack.keysDir, 'key-broker'), CLIENT_VM, key, {
      endpoint,
    });
    const peer = await send(
      'operator',
      subjects.cmd('network-overlay', 'admit-peer'),
      { overlayId, admission },
      z.object({ nodeIp: z.string() }).loose(),
    );
    return { vmId: CLIENT_VM, nodeIp: peer.nodeIp, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
