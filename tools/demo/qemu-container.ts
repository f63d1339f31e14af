import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { findQemuBinary } from '@ccm/qmp';
import { LabAuthority } from '@ccm/sev-emulator';
import { bridgedHostsUnavailable, createBridgedHosts, ip, type BridgedHosts } from '@ccm/testing';
import { VmSpecSchema, type ServiceName } from '@ccm/contracts';
import { AGENT_RUN_SCRIPT, writeGuestAgentDisk } from '../guest-image/agent-disk.js';
import { containerBuildUnavailable, ensureContainerImage } from '../guest-image/container-image.js';
import { containerVmSpec } from '../guest-image/container-vm-spec.js';
import { type LocalStack } from '../stack/stack.js';
import { type SimContainerGuest } from './container-migration.js';
import { type ClientNodeSpec } from './overlay-client.js';

/** Each host's guest bridge (inside its namespace). */
const GUEST_BRIDGE = 'ccmgbr';
/** Each guest's WireGuard port on its underlay address. */
const GUEST_WG_PORT = 51820;

/** Why this machine cannot run the container demo on QEMU (then it runs on the sim drivers), or undefined. */
export function qemuContainerUnavailable(): string | undefined {
  if (!findQemuBinary()) return 'qemu-system-x86_64 is not installed (tools/dev.sh setup installs it)';
  return containerBuildUnavailable() ?? bridgedHostsUnavailable();
}

/** What the QEMU container flow needs around the local stack (the same shape as the sim flow's setup). */
export interface QemuContainerSetup {
  guest: SimContainerGuest;
  net: BridgedHosts;
  /** Where the stack's NATS and Postgres listen so that the hosts' agents and their guests reach them. */
  listen: { host: string; clientCidrs: readonly string[] };
  hostNetns(host: string): string;
  hostEnv(host: string): Record<string, string>;
  serviceEnv(app: ServiceName): Record<string, string>;
  /** Writes the guests' app disk once the stack runs (it holds the stack's NATS address and trust store). */
  writeAppDisk(stack: LocalStack): Promise<void>;
  /** The demo's TCP client's overlay node, in the root namespace on the hosts' segment. */
  client: ClientNodeSpec;
  /** Removes the namespaces and bridges (their taps go with them). */
  close(): void;
}

/**
 * The container flow on real guests: two hosts as network namespaces on one segment, each with a guest
 * bridge and a host-agent on the qemu driver (TCG) with the software secure processor of one lab and a
 * pool of guest addresses (CCM_GUEST_NET); the vm-lifecycle launches CCM's container guest image (the
 * guest-agent with the runc driver, CRIU inside) from ONE spec, so every VM has the same measured
 * command line and the owner's policy one launch digest; the key-broker puts the guest-agent's
 * credentials into each accepted launch's secret, so the app disk holds only the public trust store.
 * The workload overlay is real: network-overlay's `guest` driver has each guest-agent bring up kernel
 * WireGuard in its guest, on its underlay address (the guest-agent's default endpoint); the demo's
 * TCP client joins it from the root namespace (overlay-client.ts).
 */
export async function qemuContainerSetup(
  workDir: string,
  runRoot: string,
  keysDir: string,
  log: (m: string) => void,
): Promise<QemuContainerSetup> {
  await mkdir(workDir, { recursive: true });
  const image = await ensureContainerImage({ log });
  const labDir = join(workDir, 'lab');
  const lab = await LabAuthority.create(labDir, { rsaBits: 2048 });
  const appDisk = join(workDir, 'guest-agent.app.ext4');
  const spec = VmSpecSchema.parse(
    containerVmSpec(image, {
      appDisk,
      runScript: AGENT_RUN_SCRIPT,
      net: { bridge: GUEST_BRIDGE },
      memoryMiB: 512,
    }),
  );
  const hosts = ['host-a', 'host-b'];
  const net = createBridgedHosts(hosts, 0, { guestBridge: GUEST_BRIDGE });
  const byApp: Partial<Record<ServiceName, Record<string, string>>> = {
    'key-broker': { CCM_GUEST_AGENT_KEYS_DIR: keysDir },
    // A TCG guest boots and starts its guest-agent in about a minute, slower on a loaded machine.
    'vm-lifecycle': {
      CCM_CONTAINER_VM_SPEC: JSON.stringify(spec),
      CCM_GUEST_UP_TIMEOUT_MS: '360000',
      CCM_PROVISION_CALL_TIMEOUT_MS: '120000',
    },
    'container-checkpoint': { CCM_CHECKPOINT_DIRTY_THRESHOLD_PAGES: '16', CCM_CHECKPOINT_MAX_ROUNDS: '4' },
    // Kernel WireGuard inside the guests, driven through their guest-agents. No observer in the
    // cut-over (inside the blackout window the target cannot answer yet); verify counts the container's
    // line service accepting and answering a connection (it knows no VM id to answer with).
    'network-overlay': {
      CCM_OVERLAY_DRIVER: 'guest',
      CCM_OVERLAY_ANSWER_WAIT_MS: '0',
      CCM_OVERLAY_PROBE: 'connect',
    },
  };
  const client: ClientNodeSpec = {
    host: net.bridgeAddr,
    port: GUEST_WG_PORT + 1 + (process.pid % 1000),
    iface: `ccmdw${process.pid % 10000}`,
  };
  return {
    guest: { lab, labDir, spec },
    net,
    listen: { host: net.bridgeAddr, clientCidrs: [net.cidr] },
    hostNetns: (host) => net.hosts[host].ns,
    hostEnv: (host) => {
      const i = hosts.indexOf(host);
      return {
        CCM_RUN_DIR: join(runRoot, host),
        // its namespace's address: the demo reads its /health from the root namespace
        CCM_HTTP_HOST: net.hosts[host].addr,
        CCM_HYPERVISOR: 'qemu',
        CCM_QEMU_ACCEL: 'tcg',
        CCM_SEV: 'emulated',
        CCM_SEV_LAB_DIR: labDir,
        CCM_VM_START_TIMEOUT_MS: '60000',
        CCM_HEARTBEAT_INTERVAL_MS: '500',
        CCM_GUEST_NET: `bridge=${GUEST_BRIDGE},cidr=${net.cidr},gateway=${net.bridgeAddr},range=${net.guestAddr(i * 50)}-${net.guestAddr(i * 50 + 49)}`,
      };
    },
    serviceEnv: (app) => byApp[app] ?? {},
    async writeAppDisk(stack) {
      await writeGuestAgentDisk({
        out: appDisk,
        env: {
          CCM_NATS_URL: stack.natsUrl,
          CCM_HTTP_PORT: '0',
          CCM_GUEST_DRIVER: 'runc',
          CCM_GUEST_STREAM_TIMEOUT_MS: '120000',
          // Its endpoint defaults to the address the host-agent hands the VM, on this port.
          CCM_GUEST_OVERLAY_DRIVER: 'wireguard',
          CCM_GUEST_OVERLAY_WG_MODE: 'kernel',
          CCM_GUEST_OVERLAY_PORT: String(GUEST_WG_PORT),
        },
        keysDir: stack.keysDir,
        publicKeysOnly: true,
      });
    },
    client,
    close: () => {
      // The client node's interface, should its guest-agent have been killed before removing it.
      ip('link', 'del', client.iface);
      net.destroy();
    },
  };
}
