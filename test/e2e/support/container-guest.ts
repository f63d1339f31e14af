import { join, resolve } from 'node:path';
import { type VmSpecInput } from '@ccm/contracts';
import { type TestStack } from '@ccm/testing';
import { buildAppDisk, shellEnvFile } from '../../../tools/guest-image/app-disk.js';
import { type ContainerImage } from '../../../tools/guest-image/container-image.js';
import { containerVmSpec, type ContainerVmNetwork } from '../../../tools/guest-image/container-vm-spec.js';
import { type HostNamespaces } from './host-namespaces.js';

const repoRoot = resolve(import.meta.dirname, '..', '..', '..');
/** The run script that starts the guest-agent from the app disk with the disk's environment. */
const RUN = resolve(repoRoot, 'tools', 'guest-image', '__fixtures__', 'agent-run.sh');

type Image = Pick<ContainerImage, 'kernel' | 'initrd' | 'rootDisk'>;

/** An app disk `<work>/<name>.app.ext4` with the built guest-agent, the stack's keys and `env` as its ccm.env. */
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
  },
): Promise<VmSpecInput> {
  const disk = await buildAppDisk({
    repoRoot,
    entry: 'dist/apps/guest-agent/src/main.js',
    out: join(o.work, `${o.name}.app.ext4`),
    extra: { 'ccm.env': shellEnvFile(stack.env({ CCM_KEYS_DIR: '/run/ccm/app/keys', ...o.env })) },
    extraDirs: { keys: stack.keysDir },
  });
  return containerVmSpec(image, {
    appDisk: disk.path,
    runScript: RUN,
    net: o.net,
    ...(o.hostname ? { hostname: o.hostname } : {}),
    ...(o.memoryMiB ? { memoryMiB: o.memoryMiB } : {}),
  });
}

/**
 * The spec a host-agent launches one container guest from, on the hosts' guest bridge: an app disk
 * (in `work`) with the built guest-agent, the stack's keys and its environment (NATS, its VM id), the
 * run script that starts it, and eth0 at the `guest`-th guest address.
 */
export async function containerGuestOnBridge(
  ns: HostNamespaces,
  image: Image,
  o: { vmId: string; bridge: string; mac: string; guest: number; work: string },
): Promise<VmSpecInput> {
  const ip = ns.guestAddr(o.guest);
  return agentGuestSpec(ns.stack, image, {
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
