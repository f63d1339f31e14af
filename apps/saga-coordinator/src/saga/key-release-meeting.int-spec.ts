import { spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type INestApplication } from '@nestjs/common';
import {
  GUEST_OWNER,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  OwnerPolicySchema,
  PolicyVersionSchema,
  ReleaseLogReplySchema,
  subjects,
  verifyReleaseLog,
} from '@ccm/contracts';
import { loadTrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { encodeAmdCertificateBody } from '@ccm/sev';
import { LabAuthority, simSnpMeasurement, SoftwareSecureProcessor } from '@ccm/sev-emulator';
import {
  ccmFailure,
  startServiceProcess,
  pollUntil,
  startTestStack,
  type ServiceProcess,
  type TestStack,
  startActors,
  newMigration,
  settled,
  type OperatorClient,
  type ScriptedParticipants,
} from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startCoordinator } from '../testing/harness.js';
import { startHostAgents, type HostAgents } from '../testing/host-agent-processes.js';

const IMAGE = 'web-image';
const cliEntry = join(import.meta.dirname, '../../../../dist/apps/cli/src/main.js');

/**
 * The container saga's key steps served by the REAL key-broker (a process from dist/): `attest-target`
 * against a real host-agent's emulated SEV platform, `release-key` over fresh SNP evidence of two real
 * guest-agents (processes, simulated SNP guests on software secure processors of one lab), and `rotate`
 * revoking the released key. vm-lifecycle, network-overlay and container-checkpoint are scripted.
 */
describe('container saga: release-key served by the real key-broker and real guests', () => {
  let stack: TestStack;
  let work: string;
  let app: INestApplication;
  let operator: OperatorClient;
  let participants: ScriptedParticipants;
  let hosts: HostAgents;
  const processes: ServiceProcess[] = [];

  const asOwner = async <S extends z.ZodType>(verb: string, data: unknown, reply: S): Promise<z.infer<S>> =>
    signedRequest(
      await stack.connectAs(GUEST_OWNER),
      await stack.identity(GUEST_OWNER),
      await loadTrustStore(stack.keysDir),
      keyBrokerSubject(verb),
      data,
      reply,
      { idempotencyKey: randomUUID(), timeoutMs: 20_000 },
    );

  beforeAll(async () => {
    stack = await startTestStack({ hostIds: ['host-b'] });
    work = await mkdtemp(join(tmpdir(), 'ccm-kb-meeting-'));
    const lab = await LabAuthority.create(join(work, 'lab'), { rsaBits: 2048 });
    hosts = await startHostAgents(stack, ['host-b'], {
      CCM_HYPERVISOR: 'sim',
      CCM_SEV: 'emulated',
      CCM_SEV_LAB_DIR: join(work, 'lab'),
    });
    processes.push(await startServiceProcess('key-broker', stack.env({ CCM_INSTANCE_ID: 'kb-meeting' })));
    for (const [vmId, sp] of [
      ['vm-src', 'sp-a'],
      ['vm-tgt', 'sp-b'],
    ] as const) {
      const dir = SoftwareSecureProcessor.create(join(work, sp), { lab }).stateDir;
      processes.push(
        await startServiceProcess(
          'guest-agent',
          stack.env({
            CCM_VM_ID: vmId,
            CCM_INSTANCE_ID: `guest-${vmId}`,
            CCM_GUEST_SEV: 'emulated',
            CCM_GUEST_SEV_DIR: dir,
            CCM_GUEST_IMAGE: IMAGE,
          }),
        ),
      );
    }
    await asOwner(
      KEY_BROKER_VERBS.putPolicy,
      {
        expectedVersion: 0,
        policy: OwnerPolicySchema.parse({
          workloadClass: 'web',
          environment: 'lab',
          workloads: ['web-1'],
          trustedRoots: {
            amd: [],
            lab: [
              {
                name: 'ccm-lab',
                generation: 'milan',
                arkBodySha256: createHash('sha256').update(encodeAmdCertificateBody(lab.ark)).digest('hex'),
                arkX509Sha256: [...lab.trustAnchors().snpTrustedArks.keys()][0],
              },
            ],
          },
          sev: { minFirmware: { apiMajor: 0, apiMinor: 14 }, guestPolicy: 0x1, launchDigests: [] },
          snp: { launchDigests: [simSnpMeasurement(IMAGE).toString('hex')] },
          migration: { allowed: true, targetHosts: ['host-b'] },
        }),
      },
      PolicyVersionSchema,
    );
    // Real step timeouts at 1/5: release-key gets 6 s for two guests' evidence and the key's delivery.
    app = await startCoordinator(stack, { CCM_SAGA_TIME_SCALE: '0.2', CCM_SAGA_MIN_STEP_TIMEOUT_MS: '2000' });
    ({ operator, participants } = await startActors(
      stack,
      (cmd) =>
        cmd.verb === 'provision-vm' ? { kind: 'succeed', result: { targetVmId: 'vm-tgt' } } : undefined,
      ['key-broker', 'host-agent'],
    ));
  }, 180_000);

  afterAll(async () => {
    await participants?.stop();
    await operator?.close();
    await app?.close();
    await Promise.allSettled(processes.map((p) => p.stop()));
    await hosts?.stop();
    await stack?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('a container migration passes attest-target, release-key and rotate at the real key-broker', async () => {
    const { key, id } = newMigration();
    await operator.migrate(
      {
        workload: 'web-1',
        kind: 'container',
        sourceHost: 'host-a',
        targetHost: 'host-b',
        sourceVm: 'vm-src',
      },
      key,
    );
    const { detail } = await settled(operator, id, 120_000);
    expect(detail.phase, detail.reason).toBe('Succeeded');
    const step = (name: string) => detail.steps.find((s) => s.name === name)!.attempts.at(-1)!;
    expect(step('attest-target')).toMatchObject({ participant: 'key-broker', status: 'Succeeded' });
    expect(step('release-key')).toMatchObject({ participant: 'key-broker', status: 'Succeeded' });
    expect(step('rotate')).toMatchObject({ participant: 'key-broker', status: 'Succeeded' });
    // The owner's release log holds the grant over both guests' evidence, signed and chained.
    const { records } = await asOwner(KEY_BROKER_VERBS.releaseLog, {}, ReleaseLogReplySchema);
    const trust = await loadTrustStore(stack.keysDir);
    const brokerKey = (k: string) =>
      trust.lookup(k)?.signer === 'key-broker' ? trust.lookup(k)?.key : undefined;
    expect(verifyReleaseLog(records, brokerKey)).toMatchObject({ ok: true });
    const grant = records.find((r) => r.decision.migrationId === id && r.decision.granted)!.decision;
    expect(grant.keyId).toMatch(/^mk-/);
    expect(grant.evidence.map((e) => e.vmId)).toEqual(['vm-src', 'vm-tgt']);
    // rotate revoked the key: the target guest holds none for this migration any more.
    const noKey = await ccmFailure(
      signedRequest(
        await stack.connectAs('operator'),
        await stack.identity('operator'),
        trust,
        subjects.guestCmd('vm-tgt', 'receive'),
        { migrationId: id, containerId: 'c1', round: 1 },
        z.unknown(),
        { idempotencyKey: randomUUID(), timeoutMs: 10_000 },
      ),
    );
    expect(noKey.code).toBe('NO_MIGRATION_KEY');
    // The operator's audit replay of the migration (the built CLI) shows the release decision.
    const replay = await pollUntil(
      'ccm audit replay to list the release',
      () => {
        const r = spawnSync(
          process.execPath,
          [
            cliEntry,
            'audit',
            'replay',
            id,
            '--json',
            '--nats-url',
            stack.nats.url,
            '--keys-dir',
            stack.keysDir,
          ],
          { encoding: 'utf8', timeout: 30_000 },
        );
        return JSON.parse(r.stdout || '{}') as { keyReleases?: Array<{ subject: string; name: string }> };
      },
      (t) => (t.keyReleases ?? []).some((e) => e.subject === subjects.evt('key', id, 'release-decided')),
      { timeoutMs: 20_000 },
    );
    expect(replay.keyReleases!.map((e) => e.name)).toEqual(
      expect.arrayContaining(['release-decided', 'revoked']),
    );
    expect(participants.invalid).toEqual([]);
  });
});
