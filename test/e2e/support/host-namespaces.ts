import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findQemuBinary, killVmProcesses } from '@ccm/qmp';
import {
  hostClient,
  startServiceProcess,
  startTestStack,
  type HostClient,
  type ServiceProcess,
  type TestStack,
} from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { bridgedHostsUnavailable, createBridgedHosts } from '../../../tools/netns/bridged-hosts.js';

/**
 * Two hosts as two network namespaces on a bridge this test creates in the root namespace:
 *
 *     root: bridge 10.77.N.1/24 (NATS and Postgres listen here too)
 *       ├── veth ── namespace A: 10.77.N.2 — host-agent A and everything it starts (QEMU, sim VMs)
 *       └── veth ── namespace B: 10.77.N.3 — host-agent B …
 *
 * Each host-agent runs inside its namespace, so its VMs listen for and send migration streams on that
 * host's address, and the stream between A and B crosses the bridge. The agents reach NATS and
 * Postgres on the bridge address, which only these namespaces (and this process) use. N comes from
 * the pid, so concurrent runs do not collide. Everything is removed in {@link HostNamespaces.close}.
 */

/** Why namespaces and a bridge cannot be made here (undefined when they can): probed by making them. */
export const namespacesUnavailable = bridgedHostsUnavailable;

/** Why QEMU hosts in namespaces cannot run here (no QEMU, or no namespaces), undefined when they can. */
export function qemuHostsUnavailable(): string | undefined {
  return findQemuBinary()
    ? namespacesUnavailable()
    : 'qemu-system-x86_64 is not installed (tools/dev.sh installs qemu-system-x86)';
}

export interface NamespacedHost {
  id: string;
  ns: string;
  addr: string;
  runDir: string;
  env: Record<string, string>;
  agent?: ServiceProcess;
}

export interface HostNamespaces {
  stack: TestStack;
  nc: NatsConnection;
  client: HostClient;
  hosts: Record<string, NamespacedHost>;
  bridgeAddr: string;
  /** The guest bridge every host has, when asked for (a VM spec's `nics` name it). */
  guestBridge?: string;
  /** The address of the i-th guest on the hosts' segment. */
  guestAddr(i: number): string;
  /** Starts (or restarts) a host's agent in its namespace. */
  startAgent(id: string): Promise<ServiceProcess>;
  /** SIGKILL the agent only: its VMs keep running (a crashed agent). */
  killAgent(id: string): Promise<void>;
  /** SIGKILL the agent's whole process group, VMs included (the host goes down). */
  crashHost(id: string): Promise<void>;
  close(): Promise<void>;
}

export async function startHostNamespaces(
  ids: [string, string] | [string],
  agentEnv: Record<string, string>,
  opts: { guestBridge?: string; natsPing?: { intervalS: number; max: number } } = {},
): Promise<HostNamespaces> {
  const net = createBridgedHosts(ids, 0, opts.guestBridge ? { guestBridge: opts.guestBridge } : {});
  const hosts: Record<string, NamespacedHost> = {};
  const runRoot = await mkdtemp(join(tmpdir(), 'ccm-ha-ns-'));
  for (const { id, ns, addr } of Object.values(net.hosts)) {
    hosts[id] = { id, ns, addr, runDir: join(runRoot, id), env: {} };
  }
  const teardownNet = (): void => net.destroy();
  let stack: TestStack | undefined;
  try {
    stack = await startTestStack({
      hostIds: ids,
      listen: { host: net.bridgeAddr, clientCidrs: [net.cidr] },
      ...(opts.natsPing ? { natsPing: opts.natsPing } : {}),
    });
    const nc = await stack.connectAs('operator');
    const client = await hostClient(nc, stack.keysDir);
    for (const h of Object.values(hosts)) {
      h.env = stack.env({
        CCM_HOST_ID: h.id,
        CCM_INSTANCE_ID: `${h.id}-e2e`,
        CCM_RUN_DIR: h.runDir,
        CCM_MIGRATION_HOST: h.addr,
        CCM_LOG_LEVEL: 'log',
        ...agentEnv,
      });
    }
    const s = stack;
    const pair: HostNamespaces = {
      stack: s,
      nc,
      client,
      hosts,
      bridgeAddr: net.bridgeAddr,
      ...(net.guestBridge ? { guestBridge: net.guestBridge } : {}),
      guestAddr: net.guestAddr,
      async startAgent(id) {
        const h = hosts[id];
        h.agent = await startServiceProcess('host-agent', h.env, {
          netns: h.ns,
          readyTimeoutMs: 60_000,
          logFile: join(runRoot, `${id}.agent.log`),
        });
        return h.agent;
      },
      async killAgent(id) {
        const a = hosts[id].agent;
        if (!a) return;
        await a.stop('SIGKILL');
        hosts[id].agent = undefined;
      },
      async crashHost(id) {
        const a = hosts[id].agent;
        if (!a) return;
        try {
          process.kill(-a.child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
        await a.exited;
        hosts[id].agent = undefined;
      },
      async close() {
        await Promise.allSettled(Object.keys(hosts).map((id) => pair.killAgent(id)));
        await killVmProcesses(runRoot);
        await nc.close().catch(() => undefined);
        await s.stop();
        teardownNet();
        await rm(runRoot, { recursive: true, force: true });
      },
    };
    return pair;
  } catch (err) {
    await stack?.stop();
    teardownNet();
    await rm(runRoot, { recursive: true, force: true });
    throw err;
  }
}
