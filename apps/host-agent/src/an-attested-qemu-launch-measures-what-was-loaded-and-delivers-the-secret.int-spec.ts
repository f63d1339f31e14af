import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findQemuBinary } from '@ccm/qmp';
import { startSevLaunch, verifySevChain } from '@ccm/sev';
import { LabAuthority } from '@ccm/sev-emulator';
import { chainFromPlatform, counterReaches, expectedLaunchDigest } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The counting tiny guest is built by tools/guest-image (not a project): a test resource, as the e2e
// specs use it. This spec is the host-agent's own because it reads the agent's emulated secret area.
// eslint-disable-next-line @nx/enforce-module-boundaries
import { ensureGuestImage, tinyGuestSpec } from '../../../tools/guest-image/guest-image.js';
import { inProcessHosts, type InProcessHosts } from './__fixtures__/agents.js';
import { VmService } from './vm/vm.service.js';

/**
 * Attested launch of a real QEMU guest on a host without SEV firmware: the host-agent runs the launch
 * on the software secure processor over exactly the firmware, kernel, initrd and command line it gives
 * QEMU (QEMU starts paused), the guest owner verifies the chain and the measurement with libs/sev and
 * seals a secret for this launch; the emulator places it in the guest's secret area, and the guest
 * boots once resumed. (The agent runs in this process so the test can read the emulator's model of the
 * secret area: no secret ever leaves the agent.)
 */
const skip = findQemuBinary() ? undefined : 'qemu-system-x86_64 is not installed';
if (skip) console.warn(`[attested qemu launch] skipped: ${skip}`);

const HOST = 'qs';
const POLICY = 0x01;

describe.skipIf(skip !== undefined)('an attested QEMU launch on the software secure processor', () => {
  let h: InProcessHosts;
  let work: string;
  let lab: LabAuthority;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'ccm-attest-'));
    lab = await LabAuthority.create(join(work, 'lab'), { rsaBits: 2048 });
    h = await inProcessHosts([HOST], {
      CCM_HYPERVISOR: 'qemu',
      CCM_QEMU_ACCEL: 'tcg',
      CCM_SEV: 'emulated',
      CCM_SEV_LAB_DIR: join(work, 'lab'),
    });
    await h.start(HOST);
  }, 120_000);
  afterAll(async () => {
    await h?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('measures what QEMU was given, verifies with libs/sev, places the sealed secret and boots the guest', async () => {
    const image = await ensureGuestImage();
    const spec = tinyGuestSpec(image, { memoryMiB: 256, dirtyMiB: 8, dirtyRateMBps: 2 });
    const platform = await h.client.send(HOST, 'platform', {});
    expect(platform.capabilities).toMatchObject({ driver: 'qemu', accelerator: 'tcg', sevMode: 'emulated' });
    const chain = chainFromPlatform(platform);
    expect(verifySevChain(chain, { extraRoots: lab.trustAnchors().sevExtraRoots }).ok).toBe(true);

    const launch = startSevLaunch({ pdh: chain.pdh, policy: POLICY });
    const q = launch.qemuInputs();
    const reply = await h.client.send(HOST, 'launch', {
      vmId: 'attested',
      spec,
      sev: { policy: POLICY, godh: q.dhCertBase64, session: q.sessionBase64 },
    });
    expect(reply.vm.phase).toBe('Paused');
    const digest = await expectedLaunchDigest(spec);
    const measured = launch.verifyMeasurement(Buffer.from(reply.measurement!.blob, 'base64'), {
      digest,
      platform: reply.measurement!.platform,
    });
    const secret = Buffer.concat([Buffer.from('disk-key:'), randomBytes(23)]); // 32 bytes: a multiple of 16
    const packet = measured.sealSecret(secret);
    await h.client.send(HOST, 'inject-secret', {
      vmId: 'attested',
      packetHeader: packet.qmp['packet-header'],
      secret: packet.qmp.secret,
    });
    const running = (await h.client.send(HOST, 'resume', { vmId: 'attested' })).vm;
    expect(running.phase).toBe('Running');
    const vm = h.apps.get(HOST)!.get(VmService).get('attested')!;
    expect(vm.agentSev!.secretArea(secret.length)).toEqual(secret);
    await counterReaches(join(running.runDir, 'serial.log'), 1, 60_000);

    await h.client.send(HOST, 'destroy', { vmId: 'attested' });
  });

  it('refuses a secret whose packet was altered (BAD_MEASUREMENT), as typed SECURE_PROCESSOR_REFUSED', async () => {
    const image = await ensureGuestImage();
    const spec = { memoryMiB: 128, kernel: image.kernel, initrd: image.initrd, cmdline: 'console=ttyS0' };
    const platform = await h.client.send(HOST, 'platform', {});
    const pdh = chainFromPlatform(platform).pdh;
    const launch = startSevLaunch({ pdh, policy: POLICY });
    const q = launch.qemuInputs();
    const reply = await h.client.send(HOST, 'launch', {
      vmId: 'tampered',
      spec,
      sev: { policy: POLICY, godh: q.dhCertBase64, session: q.sessionBase64 },
    });
    const blob = Buffer.from(reply.measurement!.blob, 'base64');
    // The owner skips nothing: the measurement must verify before a secret is sealed.
    const digest = await expectedLaunchDigest(spec);
    const packet = launch
      .verifyMeasurement(blob, { digest, platform: reply.measurement!.platform })
      .sealSecret(randomBytes(32));
    const altered = Buffer.from(packet.qmp.secret, 'base64');
    altered[0] = altered[0] ^ 0xff;
    const err = await h.client
      .send(HOST, 'inject-secret', {
        vmId: 'tampered',
        packetHeader: packet.qmp['packet-header'],
        secret: altered.toString('base64'),
      })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SECURE_PROCESSOR_REFUSED' });
    expect((err as Error).message).toMatch(/LAUNCH_SECRET: BAD_MEASUREMENT/);
    expect((await h.client.send(HOST, 'describe', { vmId: 'tampered' })).vms[0].sev).toMatchObject({
      secretInjected: false,
    });
    await h.client.send(HOST, 'destroy', { vmId: 'tampered' });
  });
});
