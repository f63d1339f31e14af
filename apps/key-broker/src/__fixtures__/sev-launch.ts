import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  LaunchSecretReplySchema,
  LaunchSessionReplySchema,
} from '@ccm/contracts';
import { SevLaunchDigest } from '@ccm/sev';
import { SoftwareSecureProcessor } from '@ccm/sev-emulator';
import { type BrokerStack } from './broker-stack.js';

const PAGE = 4096;
/** Where the simulated SEV guest's boot page is loaded, and where LAUNCH_SECRET writes its secret table. */
const BOOT_GPA = 0;
const SECRET_GPA = 0x1000;
/** SEV guest policy bit ES. */
const ES = 0x4;

/** A deterministic page named `what` of the image `image` (the owner computes its digest offline). */
function page(image: string, what: string): Buffer {
  const out = Buffer.alloc(PAGE);
  for (let i = 0, block = 0; i < out.length; block++) {
    i += createHash('sha256')
      .update(`ccm-sim-sev-guest-v1\0${what}\0${image}\0${block}`)
      .digest()
      .copy(out, i);
  }
  return out;
}

/** GCTX.LD of a simulated SEV (or SEV-ES) guest booted from `image`: the reference value in the policy. */
export function simSevLaunchDigest(image: string, es: boolean): string {
  const d = new SevLaunchDigest().updateData(page(image, 'boot'));
  if (es) d.updateVmsa(page(image, 'vmsa'));
  return d.digest().toString('hex');
}

/**
 * An attested SEV launch as vm-lifecycle and the hypervisor make it: the key-broker's launch session
 * (it attests the host's chain), LAUNCH_START on the host's software secure processor with the GODH
 * and session, the boot page (and a VMSA for SEV-ES) measured, LAUNCH_MEASURE judged by the broker,
 * its LAUNCH_SECRET packet injected. Returns the file holding the guest's own decrypted view of the
 * secret page: the EFI secret table its guest-agent reads (CCM_GUEST_SECRET_TABLE).
 */
export async function attestedSevLaunch(
  kb: BrokerStack,
  o: { hostId: string; vmId: string; workloadId: string; image: string },
): Promise<{ secretTable: string; launchSessionId: string; es: boolean }> {
  const s = await kb.send(
    'vm-lifecycle',
    keyBrokerSubject(KEY_BROKER_VERBS.launchSession),
    { vmId: o.vmId, hostId: o.hostId, workloadId: o.workloadId },
    LaunchSessionReplySchema,
  );
  const sp = SoftwareSecureProcessor.open(join(kb.work, o.hostId, 'sev-emulator'));
  sp.init();
  const es = (s.policy & ES) !== 0;
  const guest = sp.launchStart({
    policy: s.policy,
    godh: Buffer.from(s.godh, 'base64'),
    session: Buffer.from(s.session, 'base64'),
    memoryBytes: 1 << 20,
  });
  sp.activate(guest);
  const boot = page(o.image, 'boot');
  guest.host.write(BOOT_GPA, boot);
  sp.launchUpdateData(guest, BOOT_GPA, boot.length);
  if (es) sp.launchUpdateVmsa(guest, page(o.image, 'vmsa'));
  const measured = sp.launchMeasure(guest);
  const { apiMajor, apiMinor, build } = sp.config;
  const packet = await kb.send(
    'vm-lifecycle',
    keyBrokerSubject(KEY_BROKER_VERBS.launchSecret),
    {
      launchSessionId: s.launchSessionId,
      measurement: { blob: measured.blob.toString('base64'), platform: { apiMajor, apiMinor, build } },
    },
    LaunchSecretReplySchema,
  );
  const secret = Buffer.from(packet.secret, 'base64');
  sp.launchSecret(guest, {
    header: Buffer.from(packet.packetHeader, 'base64'),
    data: secret,
    gpa: SECRET_GPA,
  });
  sp.launchFinish(guest);
  const secretTable = join(kb.work, `${o.vmId}.secret-table`);
  await writeFile(secretTable, guest.inGuest().memory.read(SECRET_GPA, secret.length), { mode: 0o600 });
  return { secretTable, launchSessionId: s.launchSessionId, es };
}
