import { copyFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type VmSpecInput } from '@ccm/contracts';
import { TRUST_FILE } from '@ccm/keys';
import { buildAppDisk, shellEnvFile } from '../../../tools/guest-image/app-disk.js';
import { type ContainerImage } from '../../../tools/guest-image/container-image.js';
import { containerVmSpec } from '../../../tools/guest-image/container-vm-spec.js';
import { type HostNamespaces } from './host-namespaces.js';

const repoRoot = resolve(import.meta.dirname, '..', '..', '..');
/** The run script that starts the guest-agent from the app disk with the disk's environment. */
const RUN = resolve(repoRoot, 'tools', 'guest-image', '__fixtures__', 'agent-run.sh');

/**
 * The spec a host-agent launches one container guest from, on the hosts' guest bridge: an app disk
 * (in `work`) with the built guest-agent, the stack's keys and its environment (NATS, its VM id), the
 * run script that starts it, and eth0 at the `guest`-th guest address. `publicKeysOnly`: the disk's
 * keys dir holds the trust store only, no private key (a guest launched attested whose key-broker
 * seals the guest-agent's identity into its launch secret).
 */
export async function containerGuestOnBridge(
  ns: HostNamespaces,
  image: Pick<ContainerImage, 'kernel' | 'initrd' | 'rootDisk'>,
  o: { vmId: string; bridge: string; mac: string; guest: number; work: string; publicKeysOnly?: boolean },
): Promise<VmSpecInput> {
  const ip = ns.guestAddr(o.guest);
  let keys = ns.stack.keysDir;
  if (o.publicKeysOnly) {
    keys = join(o.work, `${o.vmId}.public-keys`);
    await mkdir(keys, { recursive: true });
    await copyFile(join(ns.stack.keysDir, TRUST_FILE), join(keys, TRUST_FILE));
  }
  const disk = await buildAppDisk({
    repoRoot,
    entry: 'dist/apps/guest-agent/src/main.js',
    out: join(o.work, `${o.vmId}.app.ext4`),
    extra: {
      'ccm.env': shellEnvFile(
        ns.stack.env({
          CCM_VM_ID: o.vmId,
          CCM_INSTANCE_ID: `guest-${o.vmId}`,
          CCM_KEYS_DIR: '/run/ccm/app/keys',
          CCM_GUEST_STREAM_HOST: ip,
        }),
      ),
    },
    extraDirs: { keys },
  });
  return containerVmSpec(image, {
    appDisk: disk.path,
    runScript: RUN,
    hostname: o.vmId,
    net: { bridge: o.bridge, mac: o.mac, ip: `${ip}/24` },
  });
}
