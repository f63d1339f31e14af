import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LabAuthority, SoftwareSecureProcessor } from '@ccm/sev-emulator';

/** What a sim VM process needs to start its guest-agent (set by the sim driver, see CCM_SIM_GUEST_AGENT). */
export interface GuestInsideSettings {
  readonly vmId: string;
  readonly runDir: string;
  readonly labDir: string;
  readonly image: string;
  readonly entry: string;
}

export function guestInsideSettings(
  vmId: string | undefined,
  runDir: string,
  env: NodeJS.ProcessEnv,
): GuestInsideSettings | undefined {
  const labDir = env['CCM_SIM_GUEST_LAB_DIR'];
  const entry = env['CCM_SIM_GUEST_AGENT_ENTRY'];
  if (!vmId || !labDir || !entry) return undefined;
  return { vmId, runDir, labDir, entry, image: env['CCM_SIM_GUEST_IMAGE'] ?? 'ccm-guest' };
}

/**
 * The inside of a simulated confidential VM: what a guest image's init starts once the guest runs.
 * A guest-agent process with `CCM_VM_ID` = the VM's id, attesting as a simulated SNP guest booted from
 * `image` on a secure processor the host's lab endorses (its state in the VM's run dir, made on first
 * boot), on the bus settings the VM process inherited from its host-agent. It watches the VM process
 * and ends with it (`CCM_GUEST_VM_PID`), so a destroyed or killed VM leaves no guest-agent behind.
 */
export function startGuestInside(s: GuestInsideSettings): ChildProcess {
  const spDir = join(s.runDir, 'guest-sp');
  if (!existsSync(join(spDir, 'platform.json'))) {
    SoftwareSecureProcessor.create(spDir, { lab: LabAuthority.open(s.labDir) });
  }
  const log = openSync(join(s.runDir, 'guest-agent.log'), 'a');
  const child = spawn(process.execPath, [s.entry], {
    stdio: ['ignore', log, log],
    env: {
      ...process.env,
      CCM_VM_ID: s.vmId,
      CCM_INSTANCE_ID: `guest-${s.vmId}`,
      CCM_HTTP_PORT: '0',
      CCM_GUEST_SEV: 'emulated',
      CCM_GUEST_SEV_DIR: spDir,
      CCM_GUEST_IMAGE: s.image,
      CCM_GUEST_VM_PID: String(process.pid),
    },
  });
  closeSync(log);
  if (child.pid) writeFileSync(join(s.runDir, 'guest-agent.pid'), `${child.pid}\n`);
  return child;
}
