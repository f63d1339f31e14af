import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdmitGuestReplySchema,
  ErrorCodes,
  GetVmReplySchema,
  HOST_COMMANDS,
  hostCommandSubject,
  hostEventSubject,
  KEY_BROKER_VERBS,
  KeyBrokerErrorCodes,
  keyBrokerSubject,
  ListHostsReplySchema,
  LaunchVmReplySchema,
  ListVmsReplySchema,
  OVERLAY_ADMISSION_TYPE,
  OverlayAdmissionSchema,
  ReleaseLogReplySchema,
  PlaceReplySchema,
  PutPolicyReplySchema,
  StepDoneSchema,
  subjects,
  TargetVmReplySchema,
  type VM_LIFECYCLE_VERBS,
  VmLifecycleErrorCodes,
  vmLifecycleSubject,
  type HostEventData,
  type HostRecord,
  type OwnerPolicyInput,
  type SignerName,
  type StepCommand,
  type VmSpecInput,
} from '@ccm/contracts';
import { loadIdentity } from '@ccm/keys';
import { encodeEnvelope, sealEnvelope } from '@ccm/messaging';
import { defaultSeabios } from '@ccm/qmp';
import { directBootLaunchDigest, encodeAmdCertificateBody } from '@ccm/sev';
import { simSnpMeasurement } from '@ccm/sev-emulator';
import { builtServiceEntry, ccmFailure, pollUntil, stepCommand } from '@ccm/testing';
import { jetstream } from '@nats-io/jetstream';
import { z } from 'zod';
import { startLifecycleStack, type LifecycleStack } from './__fixtures__/lifecycle-stack.js';
import { targetVmIdFor } from './provision/provision.handlers.js';
import { HostEventsConsumer } from './registry/host-events.consumer.js';

/** Short for the test, yet many heartbeats (300 ms) long: a loaded machine delays some. */
const LIVENESS_MS = 6_000;
const q = (verb: (typeof VM_LIFECYCLE_VERBS)[keyof typeof VM_LIFECYCLE_VERBS]) => vmLifecycleSubject(verb);

describe('vm-lifecycle: registry, placement and provision-vm with real host-agents and key-broker', () => {
  let s: LifecycleStack;
  let spec: VmSpecInput & { kernel: string; initrd: string; cmdline: string };

  const hosts = () => s.send('operator', q('list-hosts'), {}, ListHostsReplySchema);
  const hostOf = async (id: string): Promise<HostRecord | undefined> =>
    (await hosts()).hosts.find((h) => h.hostId === id);
  const step = (verb: 'provision-vm' | 'destroy-vm', cmd: StepCommand) =>
    s.send(
      'saga-coordinator',
      subjects.cmd('vm-lifecycle', verb),
      cmd,
      verb === 'provision-vm' ? TargetVmReplySchema.loose() : StepDoneSchema,
      `${cmd.migrationId}:${cmd.step}:${cmd.kind === 'compensation' ? 'compensate:' : ''}${cmd.attempt}`,
    );
  const describeOn = (host: string, vmId: string) =>
    s.send(
      'operator',
      hostCommandSubject(host, 'describe'),
      { vmId, all: true },
      HOST_COMMANDS.describe.reply,
    );
  /** Publishes a signed event to CCM_EVENTS as `signer` (optionally a host-agent pinned to `scope`). */
  const publishAs = async (
    signer: SignerName,
    scope: string | undefined,
    subject: string,
    type: string,
    data: unknown,
  ) => {
    const nc = await s.connection(signer, scope);
    const env = sealEnvelope(await loadIdentity(s.stack.keysDir, signer, scope), {
      natssubject: subject,
      type,
      data,
    });
    await jetstream(nc).publish(subject, encodeEnvelope(env), { msgID: env.id });
  };

  beforeAll(async () => {
    s = await startLifecycleStack(['host-a', 'host-b', 'host-c'], {
      CCM_HOST_LIVENESS_TIMEOUT_MS: String(LIVENESS_MS),
    });
    spec = {
      memoryMiB: 32,
      cpus: 1,
      kernel: join(s.work, 'vmlinux'),
      initrd: join(s.work, 'initrd'),
      cmdline: 'console=ttyS0',
    };
    await writeFile(spec.kernel, randomBytes(64 * 1024));
    await writeFile(spec.initrd, randomBytes(16 * 1024));
    const digest = directBootLaunchDigest(await readFile(defaultSeabios()), {
      kernel: await readFile(spec.kernel),
      initrd: await readFile(spec.initrd),
      cmdline: spec.cmdline,
    });
    const policy: OwnerPolicyInput = {
      workloadClass: 'web',
      environment: 'lab',
      workloads: ['web-1', 'web-2', 'web-3', 'web-4', 'web-5'],
      trustedRoots: {
        amd: [],
        lab: [
          {
            name: 'lab',
            generation: 'milan',
            arkBodySha256: createHash('sha256').update(encodeAmdCertificateBody(s.lab.ark)).digest('hex'),
            // the sim VMs' guest-agents attest as SNP guests of the same lab
            arkX509Sha256: [...s.lab.trustAnchors().snpTrustedArks.keys()][0],
          },
        ],
      },
      sev: {
        minFirmware: { apiMajor: 0, apiMinor: 0 },
        guestPolicy: 0x1,
        launchDigests: [digest.toString('hex')],
      },
      snp: { launchDigests: [simSnpMeasurement('ccm-guest').toString('hex')] },
      migration: { allowed: true, targetHosts: ['host-b', 'host-c'] },
    };
    await s.send(
      'guest-owner',
      keyBrokerSubject(KEY_BROKER_VERBS.putPolicy),
      { policy, expectedVersion: 0 },
      PutPolicyReplySchema,
    );
  }, 180_000);
  afterAll(async () => {
    await s?.close();
  });

  it('registers every host from its host-agent: capabilities, SEV mode, TCB, chain digest, live', async () => {
    const all = await pollUntil(
      'three live hosts',
      () => hosts(),
      (r) => r.hosts.filter((h) => h.live).length === 3,
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(all.livenessTimeoutMs).toBe(LIVENESS_MS);
    const a = all.hosts.find((h) => h.hostId === 'host-a')!;
    expect(a).toMatchObject({
      sevMode: 'emulated',
      capabilities: { driver: 'sim', sev: true },
      tcb: { apiMajor: expect.any(Number), apiMinor: expect.any(Number), build: expect.any(Number) },
      pdhSha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    // The PDH digest is of the chain the host itself reports on `platform`.
    const platform = await s.send(
      'key-broker',
      hostCommandSubject('host-a', 'platform'),
      {},
      HOST_COMMANDS.platform.reply,
    );
    expect(a.pdhSha256).toBe(
      createHash('sha256').update(Buffer.from(platform.sev!.chain.pdh, 'base64')).digest('hex'),
    );
    expect(a.tcb).toEqual(platform.sev!.version);
    // Heartbeats move last-seen forward.
    await pollUntil(
      'a newer heartbeat of host-a',
      () => hostOf('host-a'),
      (h) => !!h && h.lastSeenAt > a.lastSeenAt,
      {
        timeoutMs: 10_000,
      },
    );
    // Over HTTP, the same.
    const http = ListHostsReplySchema.parse(await (await fetch(`${s.httpUrl}/hosts`)).json());
    expect(http.hosts.map((h) => h.hostId)).toEqual(['host-a', 'host-b', 'host-c']);
  });

  it('places a VM on a live SEV host other than the source and says why the others were not chosen', async () => {
    const r = await s.send(
      'operator',
      q('place'),
      { memoryMiB: 64, sourceHost: 'host-a', candidates: ['host-a', 'host-b'] },
      PlaceReplySchema,
    );
    expect(r.hostId).toBe('host-b');
    expect(r.rejected).toEqual([
      { hostId: 'host-a', reasons: [{ code: 'source-host', detail: 'the source host (anti-affinity)' }] },
      { hostId: 'host-c', reasons: [{ code: 'not-a-candidate', detail: 'not among host-a, host-b' }] },
    ]);
    // Anti-affinity: the source is never chosen, even when it is the only candidate.
    const self = await ccmFailure(
      s.send(
        'operator',
        q('place'),
        { memoryMiB: 64, sourceHost: 'host-a', candidates: ['host-a'] },
        PlaceReplySchema,
      ),
    );
    expect(self).toMatchObject({ code: VmLifecycleErrorCodes.PlacementRefused, retryable: false });
    expect((self.details?.['rejected'] as unknown[]).length).toBe(3);
    expect(self.message).toContain('host-a: source-host');
    const huge = await ccmFailure(s.send('operator', q('place'), { memoryMiB: 1 << 20 }, PlaceReplySchema));
    expect(huge.message).toMatch(/host-a: memory \(\d+ MiB free, 1048576 MiB needed\)/);
  });

  it('refuses bad queries with typed errors, over NATS and HTTP', async () => {
    const badPhase = await ccmFailure(
      s.send('operator', q('list-vms'), { phase: 'Sleeping' }, ListVmsReplySchema),
    );
    expect(badPhase.code).toBe(ErrorCodes.ValidationFailed);
    const unknownField = await ccmFailure(
      s.send('operator', q('list-hosts'), { all: true }, ListHostsReplySchema),
    );
    expect(unknownField.code).toBe(ErrorCodes.ValidationFailed);
    const badPlace = await ccmFailure(s.send('operator', q('place'), { memoryMiB: 0 }, PlaceReplySchema));
    expect(badPlace.code).toBe(ErrorCodes.ValidationFailed);
    const missing = await ccmFailure(
      s.send('operator', q('get-vm'), { vmId: 'no-such-vm' }, GetVmReplySchema),
    );
    expect(missing.code).toBe(ErrorCodes.NotFound);
    const r400 = await fetch(`${s.httpUrl}/vms?limit=0`);
    expect(r400.status).toBe(400);
    expect(await r400.json()).toMatchObject({ error: { code: ErrorCodes.ValidationFailed } });
    const r404 = await fetch(`${s.httpUrl}/vms/no-such-vm`);
    expect(r404.status).toBe(404);
    expect(await r404.json()).toMatchObject({ error: { code: ErrorCodes.NotFound } });
    // A step command without the spec to launch, and no VM of the workload known: typed, no effect.
    const noSpec = await ccmFailure(
      step('provision-vm', stepCommand({ workload: { id: 'web-9', kind: 'container' } })),
    );
    expect(noSpec).toMatchObject({ code: ErrorCodes.ValidationFailed, effect: 'none' });
    // Only the coordinator runs saga steps.
    const cmd = stepCommand({ context: { vmSpec: { ...spec, cpus: 1 } } });
    const operator = await ccmFailure(
      s.send('operator', subjects.cmd('vm-lifecycle', 'provision-vm'), cmd, TargetVmReplySchema),
    );
    expect(operator.code).toBe(ErrorCodes.Unauthorized);
  });

  it('provision-vm launches an attested VM on the target, a retry finds the same VM, destroy-vm removes it', async () => {
    const cmd = stepCommand({
      workload: { id: 'web-1', kind: 'container' },
      context: { vmSpec: { ...spec, cpus: 1 } },
    });
    const vmId = targetVmIdFor(cmd.migrationId);
    const first = await step('provision-vm', cmd);
    expect(first).toMatchObject({ targetVmId: vmId, hostId: 'host-b' });
    const onHost = (await describeOn('host-b', vmId)).vms[0];
    expect(onHost).toMatchObject({ phase: 'Running', sev: { secretInjected: true } });
    // provision-vm answered only once the guest-agent inside the new VM (sim: started by the VM) was up.
    const guestIdentity = () =>
      s.send('operator', subjects.guestCmd(vmId, 'identity'), {}, z.object({ vmId: z.string() }).loose());
    expect(await guestIdentity()).toMatchObject({ vmId });
    // A retry under a new attempt (after an ambiguous timeout) acts no more.
    const again = await step('provision-vm', { ...cmd, attempt: 2 });
    expect(again.targetVmId).toBe(vmId);
    expect((await describeOn('host-b', vmId)).vms).toHaveLength(1);
    // The registry: wanted Running, seen Running, its history from the host-agent's events.
    const vm = await pollUntil(
      'the registry to see it running',
      () => s.send('operator', q('get-vm'), { vmId }, GetVmReplySchema),
      (v) => v.observed === 'Running',
      { timeoutMs: 15_000 },
    );
    expect(vm).toMatchObject({
      hostId: 'host-b',
      desired: 'Running',
      workloads: ['web-1'],
      provisionedBy: cmd.migrationId,
      launch: { launchDigest: expect.stringMatching(/^[0-9a-f]{64}$/) },
      spec: { memoryMiB: 32 },
    });
    expect(vm.phaseHistory.map((p) => p.phase)).toEqual(expect.arrayContaining(['Paused', 'Running']));
    expect(vm.phaseHistory.map((p) => p.phase).indexOf('Paused')).toBeLessThan(
      vm.phaseHistory.map((p) => p.phase).lastIndexOf('Running'),
    );
    // It takes host-b's capacity.
    expect((await hostOf('host-b'))?.allocatedMemoryMiB).toBe(32);

    const undo: StepCommand = { ...cmd, kind: 'compensation', attempt: 1 };
    expect(await step('destroy-vm', undo)).toMatchObject({
      targetVmId: vmId,
      destroyed: true,
      identityRevoked: true,
    });
    expect((await describeOn('host-b', vmId)).vms[0]?.phase).toBe('Destroyed');
    // The guest-agent ended with its VM (identityRevoked: the key-broker refuses that guest from now on).
    await pollUntil(
      'the guest-agent gone with its VM',
      () =>
        guestIdentity().then(
          () => 'up',
          () => 'gone',
        ),
      (x) => x === 'gone',
      {
        timeoutMs: 15_000,
      },
    );

    // Idempotent: again, and under a new attempt, nothing changes and nothing fails.
    await step('destroy-vm', undo);
    await step('destroy-vm', { ...undo, attempt: 2 });
    const gone = await pollUntil(
      'the registry to see it destroyed',
      () => s.send('operator', q('get-vm'), { vmId, host: 'host-b' }, GetVmReplySchema),
      (v) => v.observed === 'Destroyed',
      { timeoutMs: 15_000 },
    );
    expect(gone.desired).toBe('Destroyed');
    expect((await hostOf('host-b'))?.allocatedMemoryMiB).toBe(0);
    // Compensating a migration that never provisioned anything is a no-op.
    const never = stepCommand({ kind: 'compensation' });
    expect(await step('destroy-vm', never)).toMatchObject({ destroyed: false });
  });

  it('launch-vm (operator only) launches an attested VM on the named host, idempotent by VM id', async () => {
    const vmId = 'cvm-launched-1';
    await pollUntil(
      'host-c registered and live',
      () => hostOf('host-c'),
      (h) => h?.live === true,
      {
        timeoutMs: 30_000,
      },
    );
    const req = { vmId, host: 'host-c', workloads: ['web-5'], spec: { ...spec, cpus: 1 } };
    const launched = await s.send('operator', q('launch-vm'), req, LaunchVmReplySchema);
    expect(launched).toMatchObject({
      vmId,
      hostId: 'host-c',
      launchDigest: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(launched.overlay).toBeUndefined();
    expect((await describeOn('host-c', vmId)).vms[0]).toMatchObject({
      phase: 'Running',
      sev: { secretInjected: true },
    });
    // It answered only once the guest-agent inside was up.
    expect(
      await s.send(
        'operator',
        subjects.guestCmd(vmId, 'identity'),
        {},
        z.object({ vmId: z.string() }).loose(),
      ),
    ).toMatchObject({ vmId });
    const vm = await s.send('operator', q('get-vm'), { vmId }, GetVmReplySchema);
    expect(vm).toMatchObject({
      hostId: 'host-c',
      desired: 'Running',
      workloads: ['web-5'],
      launch: { launchSessionId: launched.launchSessionId, launchDigest: launched.launchDigest },
    });
    expect(vm.provisionedBy).toBeUndefined();
    // Again (a new request, not a resend): the same VM, no second launch.
    expect(await s.send('operator', q('launch-vm'), req, LaunchVmReplySchema)).toMatchObject({
      vmId,
      hostId: 'host-c',
      launchSessionId: launched.launchSessionId,
    });
    expect((await describeOn('host-c', vmId)).vms).toHaveLength(1);
    // The same VM id elsewhere is a conflict; bad requests are typed and launch nothing.
    const elsewhere = await ccmFailure(
      s.send('operator', q('launch-vm'), { ...req, host: 'host-b' }, LaunchVmReplySchema),
    );
    expect(elsewhere).toMatchObject({ code: ErrorCodes.Conflict, details: { hostId: 'host-c' } });
    const refusals = [
      [{ ...req, vmId: 'cvm-launched-2' }, 'saga-coordinator', ErrorCodes.Unauthorized],
      // a guest-agent may not even publish there: NATS refuses it, the request finds no responder
      [{ ...req, vmId: 'cvm-launched-2' }, 'guest-agent', ErrorCodes.Unavailable],
      [
        { host: 'host-c', workloads: ['web-5'], vmId: 'cvm-launched-2' },
        'operator',
        ErrorCodes.ValidationFailed,
      ],
      [{ ...req, vmId: 'cvm-launched-2', workloads: [] }, 'operator', ErrorCodes.ValidationFailed],
      [
        { ...req, vmId: 'cvm-launched-2', host: 'host-nowhere' },
        'operator',
        VmLifecycleErrorCodes.PlacementRefused,
      ],
      [
        { ...req, vmId: 'cvm-launched-2', spec: { ...spec, memoryMiB: 1 << 19 } },
        'operator',
        VmLifecycleErrorCodes.PlacementRefused,
      ],
    ] as const;
    for (const [body, signer, code] of refusals) {
      expect(
        (await ccmFailure(s.send(signer, q('launch-vm'), body, LaunchVmReplySchema))).code,
        `${signer} ${JSON.stringify(body).slice(0, 80)}`,
      ).toBe(code);
    }
    expect((await describeOn('host-c', 'cvm-launched-2').catch(() => ({ vms: [] }))).vms).toHaveLength(0);

    // admit-guest: the vm-lifecycle alone may ask. The operator and a guest-agent are refused.
    const admitGuest = { vmId, workloadId: 'web-5' };
    for (const signer of ['operator', 'guest-agent', 'guest-owner', 'saga-coordinator'] as const) {
      const e = await ccmFailure(
        s.send(signer, keyBrokerSubject(KEY_BROKER_VERBS.admitGuest), admitGuest, AdmitGuestReplySchema),
      );
      expect(e.code, signer).toBe(ErrorCodes.Unauthorized);
    }
    // Asked as the vm-lifecycle: the broker judged the guest's fresh evidence and signs its attested key.
    const admitted = await s.send(
      'vm-lifecycle',
      keyBrokerSubject(KEY_BROKER_VERBS.admitGuest),
      admitGuest,
      AdmitGuestReplySchema,
    );
    expect(admitted.admission.type).toBe(OVERLAY_ADMISSION_TYPE);
    expect(admitted.admission.source).toBe('key-broker');
    const statement = OverlayAdmissionSchema.parse(admitted.admission.data);
    const guestKey = (
      await s.send(
        'operator',
        subjects.guestCmd(vmId, 'identity'),
        {},
        z.object({ publicKey: z.string() }).loose(),
      )
    ).publicKey;
    expect(statement).toMatchObject({ vmId, wgPublicKey: guestKey });
    const log = await s.send(
      'guest-owner',
      keyBrokerSubject(KEY_BROKER_VERBS.releaseLog),
      { migrationId: admitted.admissionId },
      ReleaseLogReplySchema,
    );
    expect(log.records.map((r) => r.decision)).toEqual([
      expect.objectContaining({
        seq: admitted.decision,
        kind: 'overlay-admission',
        granted: true,
        workloadId: 'web-5',
      }),
    ]);
    // A guest that does not answer, or one whose workload no policy covers, is refused naming the rule;
    // once revoked, its evidence is refused from then on.
    const refusedRule = async (body: { vmId: string; workloadId: string }) => {
      const e = await ccmFailure(
        s.send('vm-lifecycle', keyBrokerSubject(KEY_BROKER_VERBS.admitGuest), body, AdmitGuestReplySchema),
      );
      expect(e.code).toBe(KeyBrokerErrorCodes.GuestAdmissionRefused);
      return (e.details as { rule: string }).rule;
    };
    expect(await refusedRule({ vmId: 'cvm-nobody', workloadId: 'web-5' })).toBe('guest:evidence-received');
    expect(await refusedRule({ vmId, workloadId: 'db-1' })).toBe('policy-covers-workload');
    await s.send(
      'guest-owner',
      keyBrokerSubject(KEY_BROKER_VERBS.revokeGuest),
      { vmId, reason: 'test' },
      z.unknown(),
    );
    expect(await refusedRule(admitGuest)).toBe('guest:guest-not-revoked');
    await s.send(
      'operator',
      hostCommandSubject('host-c', 'destroy'),
      { vmId, reason: 'test done' },
      z.unknown(),
    );
  });

  it('provision-vm refuses a target placement rejects (the source itself), with no effect and naming why', async () => {
    const cmd = stepCommand({ targetHost: 'host-a', context: { vmSpec: { ...spec, cpus: 1 } } });
    const err = await ccmFailure(step('provision-vm', cmd));
    expect(err).toMatchObject({
      code: VmLifecycleErrorCodes.PlacementRefused,
      effect: 'none',
      retryable: false,
    });
    expect(err.message).toMatch(/: host-a: source-host \(the source host \(anti-affinity\)\)$/);
    expect(err.details).toEqual({
      rejected: [
        { hostId: 'host-a', reasons: [{ code: 'source-host', detail: 'the source host (anti-affinity)' }] },
      ],
    });
    expect((await describeOn('host-a', targetVmIdFor(cmd.migrationId))).vms).toEqual([]);
  });

  it('a launch the key-broker does not accept is destroyed on the target and refused with no effect', async () => {
    const cmd = stepCommand({
      workload: { id: 'web-2', kind: 'container' },
      context: { vmSpec: { ...spec, cpus: 1, cmdline: 'console=ttyS0 init=/bin/sh' } },
    });
    const err = await ccmFailure(step('provision-vm', cmd));
    expect(err).toMatchObject({ code: KeyBrokerErrorCodes.MeasurementRejected, effect: 'none' });
    expect(err.details).toMatchObject({ destroyed: true, targetVmId: targetVmIdFor(cmd.migrationId) });
    expect((await describeOn('host-b', targetVmIdFor(cmd.migrationId))).vms[0]?.phase).toBe('Destroyed');
  });

  it('host events signed by anyone but the host’s own pinned host-agent are never applied', async () => {
    const forged = (hostId: string): HostEventData<'registered'> => ({
      hostId,
      instanceId: 'evil',
      at: new Date().toISOString(),
      capabilities: {
        driver: 'sim',
        accelerator: 'sim',
        acceleratorReason: 'forged',
        sevMode: 'hardware',
        sev: true,
        sevEs: true,
        sevSnp: true,
        memoryMiB: 1 << 20,
        cpus: 64,
      },
      adopted: [],
      died: [],
    });
    // network-overlay may not publish host events at all: NATS refuses.
    await expect(
      publishAs(
        'network-overlay',
        undefined,
        hostEventSubject('host-z', 'registered'),
        'ccm.host.registered',
        forged('host-z'),
      ),
    ).rejects.toThrow();
    // host-a's agent may not speak for host-b: NATS refuses its subject...
    await expect(
      publishAs(
        'host-agent',
        'host-a',
        hostEventSubject('host-b', 'registered'),
        'ccm.host.registered',
        forged('host-b'),
      ),
    ).rejects.toThrow();
    // ...and on its own subject the registry refuses an event about another host.
    const before = (await hostOf('host-b'))!;
    await publishAs(
      'host-agent',
      'host-a',
      hostEventSubject('host-a', 'registered'),
      'ccm.host.registered',
      forged('host-b'),
    );
    // The unpinned host-agent identity (no host scope) is refused for every host.
    await publishAs(
      'host-agent',
      undefined,
      hostEventSubject('host-y', 'registered'),
      'ccm.host.registered',
      forged('host-y'),
    );
    const sentAt = new Date().toISOString();
    // The consumer takes events in stream order: once host-a's next real heartbeat is applied, so were those.
    await pollUntil(
      'a heartbeat of host-a after the forgeries',
      () => hostOf('host-a'),
      (h) => !!h && h.lastSeenAt > sentAt,
      {
        timeoutMs: 10_000,
      },
    );
    const after = await hosts();
    expect(after.hosts.map((h) => h.hostId)).toEqual(['host-a', 'host-b', 'host-c']);
    const b = after.hosts.find((h) => h.hostId === 'host-b')!;
    expect(b.instanceId).toBe(before.instanceId);
    expect(b.capabilities.memoryMiB).toBe(before.capabilities.memoryMiB);
    expect(b.capabilities.acceleratorReason).not.toBe('forged');
  });

  it('a redelivered VM phase change is applied once, and a late older one never moves the observed phase back', async () => {
    const consumer = s.app.get(HostEventsConsumer);
    const identity = await loadIdentity(s.stack.keysDir, 'host-agent', 'host-a');
    const subject = hostEventSubject('host-a', 'vm-changed');
    const deliver = (data: HostEventData<'vm-changed'>, seq: number, id?: string) => {
      const envelope = sealEnvelope(identity, {
        natssubject: subject,
        type: 'ccm.host.vm-changed',
        data,
        id,
      });
      return { envelope, run: () => consumer.apply(data, { subject, envelope, streamSeq: seq }) };
    };
    const t0 = Date.now();
    const running = deliver(
      {
        hostId: 'host-a',
        vmId: 'vm-redelivered',
        phase: 'Running',
        previous: 'Paused',
        at: new Date(t0).toISOString(),
      },
      1_000_001,
    );
    expect(await running.run()).toEqual({ kind: 'ack' });
    // The same envelope again (JetStream redelivers after a lost ack): nothing changes.
    const again = { subject, envelope: running.envelope, streamSeq: 1_000_001 };
    expect(await consumer.apply(running.envelope.data, again)).toEqual({ kind: 'ack' });
    // An older report delivered late joins the history but leaves the observed phase as it is.
    const older = deliver(
      {
        hostId: 'host-a',
        vmId: 'vm-redelivered',
        phase: 'Paused',
        previous: 'Starting',
        at: new Date(t0 - 1_000).toISOString(),
      },
      1_000_002,
    );
    expect(await older.run()).toEqual({ kind: 'ack' });
    const vm = await s.send('operator', q('get-vm'), { vmId: 'vm-redelivered' }, GetVmReplySchema);
    expect(vm.observed).toBe('Running');
    expect(vm.phaseHistory.map((p) => p.phase)).toEqual(['Paused', 'Running']);
    // A report about another host on host-a's subject is refused before anything is applied.
    const wrong = deliver(
      { hostId: 'host-b', vmId: 'vm-x', phase: 'Running', at: new Date().toISOString() },
      1_000_003,
    );
    expect(await wrong.run()).toMatchObject({
      kind: 'term',
      reason: expect.stringContaining('UNAUTHORIZED'),
    });
    expect((await ccmFailure(s.send('operator', q('get-vm'), { vmId: 'vm-x' }, GetVmReplySchema))).code).toBe(
      ErrorCodes.NotFound,
    );
  });

  it('ccm hosts and ccm vms (the built CLI) print the registry as a table and as JSON', async () => {
    const run = promisify(execFile);
    const flags = ['--nats-url', s.stack.nats.url, '--keys-dir', s.stack.keysDir, '--timeout-ms', '30000'];
    const cli = builtServiceEntry('cli');
    const ccm = (...args: string[]) =>
      run(process.execPath, [cli, ...args, ...flags]).catch(
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
    // One after the other: each is a whole Node process start, slow on a loaded machine.
    const table = await ccm('hosts');
    const hostsJson = await ccm('hosts', '--json');
    const vms = await ccm('vms', '--host', 'host-b');
    const vmsJson = await ccm('vms', '--json', '--host', 'host-b');
    const bad = await ccm('vms', '--phase', 'Sleeping');
    expect(table.stderr).toBe('');
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^HOST\s+LIVE\s+LAST SEEN\s+SEV\s+MODE\s+TCB/);
    // Liveness itself is checked above; here, that each host has its line with its LIVE column.
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['host-a', 'host-b', 'host-c']);
    for (const l of lines.slice(1)) expect(l.split(/\s+/)[1]).toMatch(/^(yes|NO)$/);
    expect(ListHostsReplySchema.parse(JSON.parse(hostsJson.stdout)).hosts.map((h) => h.hostId)).toContain(
      'host-a',
    );
    expect(vms.stdout.split('\n')[0]).toMatch(/^VM\s+HOST\s+DESIRED\s+OBSERVED/);
    expect(vms.stdout).toMatch(/cvm-[0-9a-f]{24}\s+host-b\s+Destroyed\s+Destroyed/);
    const listed = ListVmsReplySchema.parse(JSON.parse(vmsJson.stdout)).vms;
    expect(listed.length).toBeGreaterThan(0);
    expect(listed.every((v) => v.hostId === 'host-b')).toBe(true);
    expect(bad).toMatchObject({ code: 2 });
    expect(bad.stderr).toContain('--phase');
  }, 180_000);

  it('a host whose heartbeats stop is no longer live after the timeout, and placement says so', async () => {
    await s.hosts.get('host-c')!.kill();
    s.hosts.delete('host-c');
    const c = await pollUntil(
      'host-c to expire',
      () => hostOf('host-c'),
      (h) => !!h && !h.live,
      {
        timeoutMs: LIVENESS_MS + 10_000,
        intervalMs: 200,
      },
    );
    expect(Date.now() - Date.parse(c!.lastSeenAt)).toBeGreaterThanOrEqual(LIVENESS_MS);
    const err = await ccmFailure(
      s.send(
        'operator',
        q('place'),
        { memoryMiB: 16, sourceHost: 'host-b', candidates: ['host-c'] },
        PlaceReplySchema,
      ),
    );
    expect(err.message).toContain('host-c: not-live (no heartbeat within the liveness timeout)');
    // It comes back live when its agent does.
    await s.startHost('host-c');
    await pollUntil(
      'host-c live again',
      () => hostOf('host-c'),
      (h) => !!h && h.live,
      { timeoutMs: 30_000 },
    );
  });
});
