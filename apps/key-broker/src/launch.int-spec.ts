import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ErrorCodes,
  HOST_COMMANDS,
  hostCommandSubject,
  KEY_BROKER_VERBS,
  KeyBrokerErrorCodes,
  keyBrokerSubject,
  LaunchSecretReplySchema,
  LaunchSessionReplySchema,
  PutPolicyReplySchema,
  type OwnerPolicyInput,
} from '@ccm/contracts';
import { defaultSeabios } from '@ccm/qmp';
import { ccmFailure } from '@ccm/testing';
import { buildSevKernelHashesTable, SevLaunchDigest } from '@ccm/sev';
import { startBrokerStack, type BrokerStack } from './__fixtures__/broker-stack.js';
import { labPin, policy } from './__fixtures__/platforms.js';

/** The firmware the host-agent's VMs boot by default (the simulated hypervisor measures it too). */
const FIRMWARE = defaultSeabios();

/** GCTX.LD of a measured direct boot: the firmware (padded to 16 bytes), then the SEV hashes table. */
async function launchDigest(spec: { kernel: string; initrd: string; cmdline: string }): Promise<string> {
  const fw = await readFile(FIRMWARE);
  return new SevLaunchDigest()
    .updateData(Buffer.concat([fw, Buffer.alloc((16 - (fw.length % 16)) % 16)]))
    .updateData(
      buildSevKernelHashesTable({
        kernel: await readFile(spec.kernel),
        initrd: await readFile(spec.initrd),
        cmdline: spec.cmdline,
      }),
    )
    .digest()
    .toString('hex');
}

const session = keyBrokerSubject(KEY_BROKER_VERBS.launchSession);
const secret = keyBrokerSubject(KEY_BROKER_VERBS.launchSecret);

describe('key-broker: attested launch on the software secure processor', () => {
  let kb: BrokerStack;
  let work: string;
  let spec: { memoryMiB: number; kernel: string; initrd: string; cmdline: string };
  let owner: OwnerPolicyInput;

  beforeAll(async () => {
    kb = await startBrokerStack(['host-b']);
    work = await mkdtemp(join(tmpdir(), 'ccm-kb-launch-'));
    spec = {
      memoryMiB: 32,
      kernel: join(work, 'vmlinux'),
      initrd: join(work, 'initrd'),
      cmdline: 'console=ttyS0',
    };
    await writeFile(spec.kernel, randomBytes(64 * 1024));
    await writeFile(spec.initrd, randomBytes(16 * 1024));
    owner = {
      ...policy(),
      workloadClass: 'vms',
      environment: 'lab',
      workloads: ['vm-good', 'vm-evil'],
      trustedRoots: { amd: [], lab: [{ name: 'lab', generation: 'milan', arkBodySha256: labPin(kb.lab) }] },
      sev: {
        minFirmware: { apiMajor: 0, apiMinor: 0 },
        guestPolicy: 0x1,
        launchDigests: [await launchDigest(spec)],
      },
    };
    await kb.send(
      'guest-owner',
      keyBrokerSubject(KEY_BROKER_VERBS.putPolicy),
      { policy: owner, expectedVersion: 0 },
      PutPolicyReplySchema,
    );
  }, 120_000);
  afterAll(async () => {
    await kb?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** vm-lifecycle's part: a session from the broker, a paused SEV launch on the host, its measurement. */
  async function launch(vmId: string, vmSpec = spec) {
    const s = await kb.send(
      'vm-lifecycle',
      session,
      { vmId, hostId: 'host-b', workloadId: vmId },
      LaunchSessionReplySchema,
    );
    const launched = await kb.send(
      'vm-lifecycle',
      hostCommandSubject('host-b', 'launch'),
      { vmId, spec: vmSpec, sev: { policy: s.policy, godh: s.godh, session: s.session } },
      HOST_COMMANDS.launch.reply,
    );
    return { s, measurement: launched.measurement! };
  }
  const destroy = (vmId: string) =>
    kb
      .send('vm-lifecycle', hostCommandSubject('host-b', 'destroy'), { vmId }, HOST_COMMANDS.destroy.reply)
      .catch(() => undefined);

  it('a measurement the owner accepts gets a LAUNCH_SECRET the host’s secure processor takes', async () => {
    try {
      const { s, measurement } = await launch('vm-good');
      const packet = await kb.send(
        'vm-lifecycle',
        secret,
        { launchSessionId: s.launchSessionId, measurement },
        LaunchSecretReplySchema,
      );
      expect(packet.launchDigest).toBe(owner.sev.launchDigests[0]);
      // The firmware checks the packet's MAC with this launch's TIK and MEASURE: only it can take it.
      const injected = await kb.send(
        'vm-lifecycle',
        hostCommandSubject('host-b', 'inject-secret'),
        { vmId: 'vm-good', packetHeader: packet.packetHeader, secret: packet.secret },
        HOST_COMMANDS['inject-secret'].reply,
      );
      expect(injected.vm.vmId).toBe('vm-good');
      // A tampered measurement (one bit) is refused: nothing is sealed for it.
      const blob = Buffer.from(measurement.blob, 'base64');
      blob[3] ^= 1;
      const tampered = await ccmFailure(
        kb.send(
          'vm-lifecycle',
          secret,
          {
            launchSessionId: s.launchSessionId,
            measurement: { ...measurement, blob: blob.toString('base64') },
          },
          LaunchSecretReplySchema,
        ),
      );
      expect(tampered.code).toBe(KeyBrokerErrorCodes.MeasurementRejected);
    } finally {
      await destroy('vm-good');
    }
  });

  it('a launch of anything else (another kernel command line) gets no secret, naming the rule', async () => {
    try {
      const { s, measurement } = await launch('vm-evil', { ...spec, cmdline: 'console=ttyS0 init=/bin/sh' });
      const err = await ccmFailure(
        kb.send(
          'vm-lifecycle',
          secret,
          { launchSessionId: s.launchSessionId, measurement },
          LaunchSecretReplySchema,
        ),
      );
      expect(err).toMatchObject({ code: KeyBrokerErrorCodes.MeasurementRejected, retryable: false });
      expect(err.details).toMatchObject({ rule: 'measurement-accepted', reason: 'not-in-policy' });
    } finally {
      await destroy('vm-evil');
    }
  });

  it('the operator may neither open a launch session nor ask for a secret', async () => {
    const a = await ccmFailure(
      kb.send(
        'operator',
        session,
        { vmId: 'vm-x', hostId: 'host-b', workloadId: 'vm-good' },
        LaunchSessionReplySchema,
      ),
    );
    expect(a.code).toBe(ErrorCodes.Unauthorized);
    const b = await ccmFailure(
      kb.send(
        'operator',
        secret,
        {
          launchSessionId: 'ls-x',
          measurement: { blob: '', platform: { apiMajor: 0, apiMinor: 0, build: 0 } },
        },
        LaunchSecretReplySchema,
      ),
    );
    expect(b.code).toBe(ErrorCodes.Unauthorized);
  });
});
