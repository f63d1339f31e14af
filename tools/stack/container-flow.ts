import { randomUUID } from 'node:crypto';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ServiceName, type SignerName } from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { connectNats, signedRequest } from '@ccm/messaging';
import { killVmProcesses } from '@ccm/qmp';
import {
  hostsLiveAndOverlay,
  simContainerPolicy,
  simContainerSetup,
  stopSimGuests,
  type SendAs,
  type SimContainerGuest,
} from '../demo/container-migration.js';
import { qemuContainerSetup, qemuContainerUnavailable } from '../demo/qemu-container.js';
import { type LocalStack, type LocalStackOptions } from './stack.js';

/** The stack's two hosts (the QEMU flow's namespaces are these). */
export const FLOW_HOSTS = ['host-a', 'host-b'] as const;
/** The overlay the launcher creates; `ccm vm launch --overlay` and `ccm container run --overlay` name it. */
export const FLOW_OVERLAY = { overlayId: 'ov-stack', cidr: '10.77.0.0/24' };
/** The workload the owner's policy file covers. */
export const FLOW_WORKLOAD = 'web-1';
/** The guest owner's policy for the flow's guest, written into the state dir for `ccm policy put`. */
export const POLICY_FILE = 'policy.json';

/** The container flow the launcher configures: what the stack's options gain, what runs after it and on stop. */
export interface ContainerFlow {
  kind: 'qemu' | 'sim';
  /** Why this flow (asked for --sim, or why QEMU cannot run here, or that it can). */
  why: string;
  stackOptions: Pick<LocalStackOptions, 'hosts' | 'hostEnv' | 'serviceEnv' | 'listen' | 'hostNetns'>;
  /** With the stack up: the guests' app disk (QEMU), every host live, the overlay, the policy file. */
  ready(stack: LocalStack): Promise<{ policyFile: string }>;
  /** After the stack stopped: the VMs (and sim guest-agents) the host-agents left, the namespaces. */
  stop(): Promise<number[]>;
}

/**
 * The demo's container flow for the local stack: real QEMU guests on two hosts as network namespaces
 * (tools/demo/qemu-container.ts) where the machine can, else (or with `sim`) the sim drivers
 * (simContainerSetup). The hosts' run dirs are `<state>/run/<host>`.
 */
export async function containerFlow(
  stateDir: string,
  sim: boolean,
  log: (m: string) => void,
): Promise<ContainerFlow> {
  const runRoot = join(stateDir, 'run');
  const simDir = join(stateDir, 'sim-container');
  const qemuDir = join(stateDir, 'qemu-container');
  // Each start makes its own lab and guest (the owner puts the new policy file): what a crashed run
  // left goes first, its VMs (checked by command line) and then its run and work dirs.
  const left = await killVmProcesses(runRoot);
  if (left.length) log(`ended ${left.length} VM process(es) a crashed run left: ${left.join(', ')}`);
  await Promise.all([runRoot, simDir, qemuDir].map((d) => rm(d, { recursive: true, force: true })));
  const noQemu = sim ? 'asked for --sim' : qemuContainerUnavailable();
  const qemu = noQemu ? undefined : await qemuContainerSetup(qemuDir, runRoot, join(stateDir, 'keys'), log);
  const setup = qemu ?? (await simContainerSetup(simDir, runRoot));
  const guest: SimContainerGuest = setup.guest;
  return {
    kind: qemu ? 'qemu' : 'sim',
    why: noQemu ?? 'this machine runs QEMU guests in network namespaces',
    stackOptions: {
      hosts: [...FLOW_HOSTS],
      hostEnv: setup.hostEnv,
      serviceEnv: (app: ServiceName) => setup.serviceEnv(app),
      ...(qemu ? { listen: qemu.listen, hostNetns: qemu.hostNetns } : {}),
    },
    async ready(stack) {
      await qemu?.writeAppDisk(stack);
      const send = await operatorSend(stack);
      try {
        await hostsLiveAndOverlay(send.send, FLOW_HOSTS, FLOW_OVERLAY);
      } finally {
        await send.close();
      }
      const policyFile = join(stateDir, POLICY_FILE);
      const policy = await simContainerPolicy(guest, [FLOW_WORKLOAD], FLOW_HOSTS);
      await writeFile(policyFile, `${JSON.stringify(policy, null, 2)}\n`, { mode: 0o600 });
      await chmod(policyFile, 0o600);
      return { policyFile };
    },
    async stop() {
      // Host-agents leave their VMs running when they stop (VMs outlive their agent).
      const ended = qemu ? await killVmProcesses(runRoot) : await stopSimGuests(runRoot);
      qemu?.close();
      // Their pid files would name someone else's processes by the next start.
      await rm(runRoot, { recursive: true, force: true });
      return ended;
    },
  };
}

/** Signed requests as the stack's operator, on one connection. */
async function operatorSend(stack: LocalStack): Promise<{ send: SendAs; close: () => Promise<void> }> {
  const [identity, trust] = await Promise.all([
    loadIdentity(stack.keysDir, 'operator'),
    loadTrustStore(stack.keysDir),
  ]);
  const nc = await connectNats([stack.natsUrl], identity, 'ccm-stack');
  const send: SendAs = (signer: SignerName, subject, data, reply) => {
    if (signer !== 'operator') throw new Error(`the launcher speaks only as the operator, not ${signer}`);
    return signedRequest(nc, identity, trust, subject, data, reply, {
      idempotencyKey: randomUUID(),
      timeoutMs: 30_000,
    });
  };
  return { send, close: () => nc.close() };
}
