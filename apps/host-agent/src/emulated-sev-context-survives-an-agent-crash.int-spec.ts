import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CcmError, type SevChainBase64, type VmView } from '@ccm/contracts';
import { findQemuBinary } from '@ccm/qmp';
import { SevPolicyBit, startSevLaunch } from '@ccm/sev';
import { LabAuthority, SoftwareSecureProcessor } from '@ccm/sev-emulator';
import { ccmFailure as failure, chainFromPlatform, expectedLaunchDigest, pollUntil } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  inProcessHosts,
  startAgentProcess,
  type AgentProcess,
  type InProcessHosts,
} from './__fixtures__/agents.js';
import { writeHaltingKernel } from './__fixtures__/halting-kernel.js';
import { pidAlive, SEV_CONTEXT_FILE } from './drivers/vm-process.js';
import { chainOf } from './sev/emulated-secure-processor.js';
import { VmService } from './vm/vm.service.js';

/**
 * QEMU (TCG, a guest that only halts) on a host without SEV firmware: the agent runs each guest's SEV
 * launch on the software secure processor and keeps the context sealed in the VM's runtime dir, as the
 * AMD-SP keeps it while the VM exists. The source agent is a real process killed with SIGKILL after the attested launch and the
 * secret; the restarted agent (in this process, so the test can look at the restored context) re-adopts
 * the QEMUs and gets their contexts back: SEND_START runs and the guest migrates as an SEV guest,
 * NOSEND and an untrusted target are refused exactly as before, and a corrupted context leaves the VM
 * running with SEV migration refused as SEV_UNAVAILABLE naming the reason.
 */
const skip = findQemuBinary() ? undefined : 'qemu-system-x86_64 is not installed';
if (skip) console.warn(`[emulated SEV context across an agent crash] skipped: ${skip}`);

const A = 'sc-a';
const B = 'sc-b';
const SEND = SevPolicyBit.NODBG | SevPolicyBit.SEV;
const NOSEND = SevPolicyBit.NODBG | SevPolicyBit.NOSEND;
/** Refusals happen before QEMU is told to migrate: no destination listens here. */
const NOWHERE = 'tcp:127.0.0.1:9';

describe.skipIf(skip !== undefined)('an emulated SEV context survives a crash of the host-agent', () => {
  let h: InProcessHosts;
  let work: string;
  let common: Record<string, string>;
  let spec: { memoryMiB: number; kernel: string; initrd: string; cmdline: string };
  let crashed: AgentProcess | undefined;
  const secrets = new Map<string, Buffer>();
  const before = new Map<string, VmView>();

  const vmOn = async (host: string, vmId: string): Promise<VmView | undefined> =>
    (await h.client.send(host, 'describe', { vmId })).vms.find((v) => v.vmId === vmId);
  const contextFile = (vmId: string) => join(h.runRoot, A, 'vms', vmId, SEV_CONTEXT_FILE);
  const startMigration = (migrationId: string, vmId: string, uri: string, sev: SevChainBase64, extra = {}) =>
    h.client.send(A, 'start-migration', { migrationId, vmId, uri, sev, ...extra });
  const chainOfB = async () => (await h.client.send(B, 'platform', {})).sev!.chain;

  /** Attested launch on A as the guest owner does it: verify the measurement, seal a secret, inject it. */
  async function attestedLaunch(vmId: string, policy: number, resume: boolean): Promise<void> {
    const platform = await h.client.send(A, 'platform', {});
    const owner = startSevLaunch({ pdh: chainFromPlatform(platform).pdh, policy });
    const q = owner.qemuInputs();
    const reply = await h.client.send(A, 'launch', {
      vmId,
      spec,
      sev: { policy, godh: q.dhCertBase64, session: q.sessionBase64 },
    });
    const secret = randomBytes(32);
    const packet = owner
      .verifyMeasurement(Buffer.from(reply.measurement!.blob, 'base64'), {
        digest: await expectedLaunchDigest(spec),
        platform: reply.measurement!.platform,
      })
      .sealSecret(secret);
    await h.client.send(A, 'inject-secret', {
      vmId,
      packetHeader: packet.qmp['packet-header'],
      secret: packet.qmp.secret,
    });
    secrets.set(vmId, secret);
    const vm = resume ? (await h.client.send(A, 'resume', { vmId })).vm : (await vmOn(A, vmId))!;
    before.set(vmId, vm);
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'ccm-sev-crash-'));
    await LabAuthority.create(join(work, 'lab'), { rsaBits: 2048 });
    spec = { memoryMiB: 128, ...(await writeHaltingKernel(work)), cmdline: 'console=ttyS0' };
    common = {
      CCM_HYPERVISOR: 'qemu',
      CCM_QEMU_ACCEL: 'tcg',
      CCM_SEV: 'emulated',
      CCM_SEV_LAB_DIR: join(work, 'lab'),
      CCM_MIGRATION_POLL_MS: '50',
    };
    h = await inProcessHosts([A, B], common);
    await h.start(B);
    // A first runs as its own process, so it can die the way a crashed agent does.
    crashed = await startAgentProcess(h, A, common);
  }, 180_000);
  afterAll(async () => {
    await crashed?.kill();
    await h?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('launches attested SEV guests with their secrets; each context is kept sealed, 0600, in its runtime dir', async () => {
    await attestedLaunch('sev1', SEND, true);
    await attestedLaunch('nosend1', NOSEND, false);
    await attestedLaunch('corrupt1', SEND, true);
    for (const vmId of ['sev1', 'nosend1', 'corrupt1']) {
      expect(statSync(contextFile(vmId)).mode & 0o777).toBe(0o600);
    }
    expect(readFileSync(contextFile('sev1')).subarray(0, 8).toString()).toBe('CCMSEVGC');
  });

  let nosendBefore: CcmError;
  it('NOSEND is refused by SEND_START before the crash', async () => {
    nosendBefore = await failure(startMigration('m-nosend-0', 'nosend1', NOWHERE, await chainOfB()));
    expect(nosendBefore).toMatchObject({ code: 'SECURE_PROCESSOR_REFUSED' });
    expect(nosendBefore.details).toMatchObject({ command: 'SEND_START', status: 'POLICY_FAILURE' });
  });

  it('the agent is killed with SIGKILL and restarted: every QEMU is re-adopted and the contexts are back', async () => {
    const sealed = readFileSync(contextFile('corrupt1'));
    sealed[sealed.length - 100] ^= 0xff; // inside the sealed body
    writeFileSync(contextFile('corrupt1'), sealed);

    await crashed!.kill();
    crashed = undefined;
    for (const vm of before.values()) expect(pidAlive(vm.pid!)).toBe(true);
    const app = await h.start(A);

    for (const [vmId, was] of before) {
      const now = await pollUntil(
        `${vmId} to be re-adopted`,
        () => vmOn(A, vmId),
        (v) => v?.phase === was.phase && v.pid === was.pid,
        { timeoutMs: 20_000, intervalMs: 100 },
      );
      expect(now!.pid).toBe(was.pid);
    }
    const vms = app.get(VmService);
    const sev1 = vms.get('sev1')!.agentSev!;
    expect(sev1.state).toBe('RUNNING');
    expect(sev1.secretArea(32)).toEqual(secrets.get('sev1'));
    // nosend1 ran LAUNCH_FINISH inside the refused SEND_START: that state was kept too.
    expect(vms.get('nosend1')!.agentSev!.state).toBe('RUNNING');
    expect(vms.get('corrupt1')!.agentSev).toBeUndefined();
    expect(vms.get('corrupt1')!.agentSevLost).toMatchObject({
      reason: 'context-refused',
      fault: 'integrity',
    });
  });

  it('NOSEND is refused after the restart with the same error as before', async () => {
    const after = await failure(startMigration('m-nosend-1', 'nosend1', NOWHERE, await chainOfB()));
    expect(after.code).toBe(nosendBefore.code);
    expect(after.details).toEqual(nosendBefore.details);
    expect(after.message.replace('m-nosend-1', 'ID')).toBe(nosendBefore.message.replace('m-nosend-0', 'ID'));
    expect((await vmOn(A, 'nosend1'))!.phase).toBe('Paused');
  });

  it('a target chain from an untrusted lab is still refused by SEND_START', async () => {
    const foreignLab = await LabAuthority.create(join(work, 'foreign-lab'), { rsaBits: 2048 });
    const foreign = SoftwareSecureProcessor.create(join(work, 'foreign'), { lab: foreignLab });
    foreign.init();
    const err = await failure(startMigration('m-untrusted', 'sev1', NOWHERE, chainOf(foreign)));
    expect(err).toMatchObject({ code: 'SECURE_PROCESSOR_REFUSED' });
    expect(err.details).toMatchObject({ command: 'SEND_START', status: 'INVALID_CERTIFICATE' });
    expect(h.apps.get(A)!.get(VmService).get('sev1')!.agentSev!.state).toBe('RUNNING');
  });

  it('migrates the restored guest as an SEV guest: SEND_START ran on its context, which is kept in SUPDATE', async () => {
    const incoming = await h.client.send(B, 'prepare-incoming', {
      vmId: 'sev1',
      spec,
      migrationId: 'm-sev1',
      sev: { policy: SEND },
    });
    await startMigration('m-sev1', 'sev1', incoming.uri, await chainOfB(), { pauseBeforeSwitchover: true });
    await pollUntil(
      'm-sev1 to wait before switch-over',
      async () => (await h.client.send(A, 'describe', { vmId: 'sev1' })).migrations[0],
      (m) => m?.phase === 'AwaitingSwitchover',
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const live = h.apps.get(A)!.get(VmService).get('sev1')!;
    expect(live.agentSev!.state).toBe('SUPDATE');
    // The sealed copy says so too: opened by another instance of A's chip, the context is in SUPDATE.
    const chip = SoftwareSecureProcessor.open(join(h.runRoot, A, 'sev-emulator'));
    chip.init();
    expect(chip.importGuest(readFileSync(contextFile('sev1'))).state).toBe('SUPDATE');

    await h.client.send(A, 'continue', { migrationId: 'm-sev1' });
    const done = await pollUntil(
      'm-sev1 to end',
      async () => (await h.client.send(A, 'describe', { vmId: 'sev1' })).migrations[0],
      (m) => !!m && ['Completed', 'Cancelled', 'Failed'].includes(m.phase),
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    expect(done).toMatchObject({ phase: 'Completed' });
    await pollUntil(
      'sev1 to end on A',
      () => vmOn(A, 'sev1'),
      (v) => v?.phase === 'MigratedAway',
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect(live.agentSev!.state).toBe('UNINIT'); // SENT, then decommissioned with the source VM
    expect(existsSync(contextFile('sev1'))).toBe(false);
    const onB = await pollUntil(
      'sev1 to run on B',
      () => vmOn(B, 'sev1'),
      (v) => v?.phase === 'Running',
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect(onB!.sev).toMatchObject({ policy: SEND });
  });

  it('a corrupted context: the VM runs on, and SEV migration is refused as SEV_UNAVAILABLE naming the reason', async () => {
    expect((await vmOn(A, 'corrupt1'))!.phase).toBe('Running');
    const err = await failure(startMigration('m-corrupt', 'corrupt1', NOWHERE, await chainOfB()));
    expect(err).toMatchObject({ code: 'SEV_UNAVAILABLE', retryable: false });
    expect(err.details).toMatchObject({ reason: 'context-refused', fault: 'integrity' });
    expect(err.message).toMatch(
      /not restored after the agent restarted \(context-refused\).*SECURE_DATA_INVALID/,
    );
    expect((await vmOn(A, 'corrupt1'))!.phase).toBe('Running');
  });
});
