import { join } from 'node:path';
import { type VmSpecInput } from '@ccm/contracts';
import { type TestStack } from '@ccm/testing';
import { AGENT_RUN_SCRIPT, writeGuestAgentDisk } from '../../../tools/guest-image/agent-disk.js';
import { type ContainerImage } from '../../../tools/guest-image/container-image.js';
import { containerVmSpec, type ContainerVmNetwork } from '../../../tools/guest-image/container-vm-spec.js';
import { type HostNamespaces } from './host-namespaces.js';

type Image = Pick<ContainerImage, 'kernel' | 'initrd' | 'rootDisk'>;

/**
 * An app disk `<work>/<name>.app.ext4` with the built guest-agent, the stack's keys (the trust store
 * alone with `publicKeysOnly`) and `env` as its ccm.env.
 */
async function agentGuestSpec(
  stack: TestStack,
  image: Image,
  o: {
    name: string;
    work: string;
    env: Record<string, string>;
    net: ContainerVmNetwork;
    hostname?: string;
    memoryMiB?: number;
    publicKeysOnly?: boolean;
  },
): Promise<VmSpecInput> {
  const appDisk = await writeGuestAgentDisk({
    out: join(o.work, `${o.name}.app.ext4`),
    env: stack.env(o.env),
    keysDir: stack.keysDir,
    ...(o.publicKeysOnly ? { publicKeysOnly: true } : {}),
  });
  return containerVmSpec(image, {
    appDisk,
    runScript: AGENT_RUN_SCRIPT,
    net: o.net,
    ...(o.hostname ? { hostname: o.hostname } : {}),
    ...(o.memoryMiB ? { memoryMiB: o.memoryMiB } : {}),
  });
}

/**
 * The spec a host-agent launches one container guest from, on the hosts' guest bridge: an app disk
 * (in `work`) with the built guest-agent, the stack's keys and its environment (NATS, its VM id), the
 * run script that starts it, and eth0 at the `guest`-th guest address. `publicKeysOnly`: the disk's
 * keys dir holds the trust store only, no private key (a guest launched attested whose key-broker
 * seals the guest-agent's identity into its launch secret).
 */
export async function containerGuestOnBridge(
  ns: HostNamespaces,
  image: Image,
  o: { vmId: string; bridge: string; mac: string; guest: number; work: string; publicKeysOnly?: boolean },
): Promise<VmSpecInput> {
  const ip = ns.guestAddr(o.guest);
  return agentGuestSpec(ns.stack, image, {
    ...(o.publicKeysOnly ? { publicKeysOnly: true } : {}),
    name: o.vmId,
    work: o.work,
    env: { CCM_VM_ID: o.vmId, CCM_INSTANCE_ID: `guest-${o.vmId}`, CCM_GUEST_STREAM_HOST: ip },
    hostname: o.vmId,
    net: { bridge: o.bridge, mac: o.mac, ip: `${ip}/24` },
  });
}

/**
 * ONE spec for every container guest on the hosts' guest bridge (what vm-lifecycle's
 * CCM_CONTAINER_VM_SPEC names): one app disk whose ccm.env holds only what every guest shares (NATS,
 * keys, `env`), a NIC without MAC or address, no host name. A host-agent with CCM_GUEST_NET gives each
 * VM its id, address and stream address in fw_cfg `opt/ccm/vm`, which the run script reads.
 */
export function sharedContainerGuest(
  stack: TestStack,
  image: Image,
  o: { bridge: string; work: string; memoryMiB?: number; env?: Record<string, string> },
): Promise<VmSpecInput> {
  return agentGuestSpec(stack, image, {
    name: 'shared',
    work: o.work,
    env: o.env ?? {},
    net: { bridge: o.bridge },
    ...(o.memoryMiB ? { memoryMiB: o.memoryMiB } : {}),
  });
}
