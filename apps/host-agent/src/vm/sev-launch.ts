import { open, readFile } from 'node:fs/promises';
import { type Logger } from '@nestjs/common';
import { LAUNCH_SECRET_PAGE, type LaunchReply } from '@ccm/contracts';
import { buildSevKernelHashesTable } from '@ccm/sev';
import { type HostAgentConfig } from '../config.js';
import { type HypervisorDriver } from '../drivers/driver.js';
import { vmPaths } from '../drivers/vm-process.js';
import { type SevService } from '../sev/sev.service.js';
import { type LiveVm } from './live-vm.js';

/** The SEV parameters of an attested launch (the guest owner's session for this host's PDH). */
export interface SevLaunchParams {
  policy: number;
  godh: string;
  session: string;
}

/**
 * The host side of an attested launch: the launch measurement and the firmware that made it, and after
 * an agent restart the SEV context of a VM launched on the software secure processor.
 */
export class SevLaunches {
  constructor(
    private readonly config: HostAgentConfig,
    private readonly driver: HypervisorDriver,
    private readonly sev: SevService,
  ) {}

  /**
   * LAUNCH_MEASURE and the firmware version that made it. With firmware (the sim, SEV hardware) QEMU
   * reports both (query-sev-launch-measure, query-sev); otherwise the agent runs the
   * launch on the software secure processor and measures what QEMU was given: the firmware image, then
   * the SEV hashes table of kernel, initrd and command line (as OVMF's measured direct boot does).
   */
  async measure(vm: LiveVm, sev: SevLaunchParams): Promise<NonNullable<LaunchReply['measurement']>> {
    const proc = vm.proc!;
    if (this.driver.firmwareSev) {
      const { data } = await proc.qmp.execute('query-sev-launch-measure');
      const info = await proc.qmp.execute('query-sev');
      return {
        blob: data,
        platform: { apiMajor: info['api-major'], apiMinor: info['api-minor'], build: info['build-id'] },
      };
    }
    const spec = vm.record.spec;
    const launch = this.sev.processor!.launch({
      vmId: vm.vmId,
      policy: sev.policy,
      godh: Buffer.from(sev.godh, 'base64'),
      session: Buffer.from(sev.session, 'base64'),
      regions: [
        await readFile(this.config.CCM_VM_FIRMWARE),
        buildSevKernelHashesTable({
          kernel: await readFile(spec.kernel!),
          initrd: spec.initrd ? await readFile(spec.initrd) : undefined,
          cmdline: spec.cmdline ?? '',
        }),
      ],
      contextFile: vmPaths(vm.record.runDir).sevContext,
    });
    vm.agentSev = launch;
    return { blob: launch.measure().toString('base64'), platform: this.sev.processor!.version };
  }

  /**
   * LAUNCH_FINISH of a launch on the software secure processor, before the VM's first `cont`; when a
   * secret was injected, LAUNCH_SECRET's last half follows: the secret the emulator decrypted into its
   * model of the guest's secret area (readable as the guest sees it once the launch is finished), as a
   * zero-padded page, is written into the real guest's RAM (the file backing it) at {@link LAUNCH_SECRET_PAGE}, while the VM
   * is still paused. Host memory, unlike SEV's encrypted RAM: whoever reads the RAM file reads the page
   * (docs/host-agent.md). A later resume (after a pause) finds the launch finished and writes nothing.
   */
  async finish(vm: LiveVm): Promise<void> {
    const launch = vm.agentSev!;
    const launching = launch.state === 'LSECRET';
    launch.finish();
    const sev = vm.record.sev;
    if (!launching || !sev?.secretInjected) return;
    const { gpa, bytes } = LAUNCH_SECRET_PAGE;
    const page = Buffer.alloc(bytes);
    // Only the secret: the rest of the modelled page is ciphertext no launch wrote, noise to the guest.
    launch.secretArea(Math.min(sev.secretBytes ?? bytes, bytes)).copy(page);
    const file = await open(vmPaths(vm.record.runDir).guestRam, 'r+');
    try {
      // (VmSpec's 16 MiB minimum holds the page at 15 MiB.)
      await file.write(page, 0, bytes, gpa);
    } finally {
      await file.close();
    }
  }

  /**
   * An adopted VM whose SEV launch ran on the software secure processor gets its context back from the
   * sealed copy in its runtime dir, as the firmware would still hold it. Without it the VM runs on and
   * SEV migration is refused, saying why ({@link LiveVm.agentSevLost}).
   */
  restore(vm: LiveVm, log: Logger): void {
    const r = vm.record;
    const sp = this.sev.processor;
    if (!r.sev || r.origin !== 'local' || this.driver.firmwareSev || sp?.mode !== 'emulated') return;
    const restored = sp.restore({ vmId: r.vmId, contextFile: vmPaths(r.runDir).sevContext });
    if ('launch' in restored) {
      vm.agentSev = restored.launch;
      log.log(`VM ${r.vmId}: SEV context restored (${restored.launch.state})`);
      return;
    }
    vm.agentSevLost = restored.lost;
    log.warn(`VM ${r.vmId}: SEV context not restored (${restored.lost.reason}): ${restored.lost.detail}`);
  }
}
