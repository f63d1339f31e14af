import { LAUNCH_SECRET_PAGE, type VmSpecInput } from '@ccm/contracts';
import { type ContainerImage, containerKernelCommandLine } from './container-image.js';
import { FW_CFG_RUN } from './container-sources.js';

/**
 * Where a container guest sits on its host's guest bridge. Without `ip` (and `mac`) the spec holds
 * nothing per VM: the host-agent leases the address (CCM_GUEST_NET) and passes it with the VM id in the
 * fw_cfg blob `opt/ccm/vm` the run script reads, and makes the MAC from the VM id, so one spec (one
 * measured command line) serves every VM.
 */
export interface ContainerVmNetwork {
  /** The host bridge the agent puts the guest's tap on. */
  bridge: string;
  mac?: string;
  /** eth0's address, `ADDR/PREFIX` (on the kernel command line). */
  ip?: string;
  gateway?: string;
}

/**
 * The VM spec a host-agent (qemu driver) launches the container guest from: the image's kernel,
 * initramfs and read-only root disk, an app disk (/dev/vdb, app-disk.ts) and a run script (fw_cfg
 * `opt/ccm/run`) that starts what runs in it, and a NIC on the host's guest bridge. TCG needs `-cpu max`
 * for the guest's Node.js. The command line reserves the page an attested launch on the software secure
 * processor places the secret table at ({@link LAUNCH_SECRET_PAGE}); the guest init hands it to the
 * guest-agent (CCM_GUEST_SEV=sev), and a launch without SEV leaves the page empty (CCM_GUEST_SEV none).
 */
export function containerVmSpec(
  image: Pick<ContainerImage, 'kernel' | 'initrd' | 'rootDisk'>,
  o: { appDisk: string; runScript: string; net: ContainerVmNetwork; hostname?: string; memoryMiB?: number },
): VmSpecInput {
  return {
    memoryMiB: o.memoryMiB ?? 1024,
    cpus: 1,
    cpu: 'max',
    kernel: image.kernel,
    initrd: image.initrd,
    cmdline: containerKernelCommandLine({
      ...(o.net.ip ? { ip: o.net.ip } : {}),
      ...(o.net.ip && o.net.gateway ? { gateway: o.net.gateway } : {}),
      ...(o.hostname ? { hostname: o.hostname } : {}),
      run: 'fw_cfg',
      secretGpa: LAUNCH_SECRET_PAGE.gpa,
    }),
    disks: [
      { path: image.rootDisk, readOnly: true },
      { path: o.appDisk, readOnly: true },
    ],
    nics: [{ bridge: o.net.bridge, ...(o.net.mac ? { mac: o.net.mac } : {}) }],
    fwCfg: [{ name: FW_CFG_RUN, path: o.runScript }],
  };
}
