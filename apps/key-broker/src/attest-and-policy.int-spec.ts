import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AttestPlatformReplySchema,
  CachedCertificateSchema,
  ErrorCodes,
  KEY_BROKER_VERBS,
  KeyBrokerErrorCodes,
  keyBrokerSubject,
  PlatformVerdictSchema,
  PutPolicyReplySchema,
  GetPolicyReplySchema,
  HOST_COMMANDS,
  hostCommandSubject,
  StepDoneSchema,
  subjects,
  TransportSessionReplySchema,
  type OwnerPolicyInput,
  type SignerName,
} from '@ccm/contracts';
import { ccmFailure, pollUntil } from '@ccm/testing';
import {
  decodeQemuSevMigrationParameters,
  decodeSevPlatformCertChain,
  encodeSevCertificate,
  verifySevChain,
} from '@ccm/sev';
import { createHash } from 'node:crypto';
import { policy, labPin } from './__fixtures__/platforms.js';
import { startBrokerStack, stepCommand, type BrokerStack } from './__fixtures__/broker-stack.js';

const put = keyBrokerSubject(KEY_BROKER_VERBS.putPolicy);
const get = keyBrokerSubject(KEY_BROKER_VERBS.getPolicy);
const attest = subjects.cmd('key-broker', 'attest-platform');

describe('key-broker: owner policies and platform attestation over NATS', () => {
  let kb: BrokerStack;
  let labPolicy: OwnerPolicyInput;

  beforeAll(async () => {
    kb = await startBrokerStack(['host-b']);
    labPolicy = {
      ...policy(),
      workloadClass: 'dev-web',
      environment: 'lab',
      workloads: ['web-1', 'web-2'],
      trustedRoots: { amd: [], lab: [{ name: 'lab', generation: 'milan', arkBodySha256: labPin(kb.lab) }] },
    };
    await kb.send('guest-owner', put, { policy: labPolicy, expectedVersion: 0 }, PutPolicyReplySchema);
    await kb.send(
      'guest-owner',
      put,
      { policy: { ...policy(), workloadClass: 'prod-web', workloads: ['shop-1'] }, expectedVersion: 0 },
      PutPolicyReplySchema,
    );
  }, 120_000);
  afterAll(() => kb?.close());

  describe('policies', () => {
    it('the owner’s change is a new version, readable back, and an event', async () => {
      const v2 = await kb.send(
        'guest-owner',
        put,
        { policy: { ...labPolicy, workloads: ['web-1', 'web-2', 'web-3'] }, expectedVersion: 1 },
        PutPolicyReplySchema,
      );
      expect(v2).toMatchObject({ workloadClass: 'dev-web', version: 2, changedBy: 'guest-owner' });
      const back = await kb.send('guest-owner', get, { workloadClass: 'dev-web' }, GetPolicyReplySchema);
      expect(back.policy.workloads).toEqual(['web-1', 'web-2', 'web-3']);
      const v1 = await kb.send(
        'guest-owner',
        get,
        { workloadClass: 'dev-web', version: 1 },
        GetPolicyReplySchema,
      );
      expect(v1.policy.workloads).toEqual(['web-1', 'web-2']);
      await pollUntil('policy.changed v2', () =>
        kb.events.find(
          (e) => e.subject === 'ccm.evt.policy.dev-web.changed' && e.text.includes('"version":2'),
        ),
      );
    });

    it.each<SignerName>(['operator', 'saga-coordinator', 'key-broker', 'host-agent'])(
      'a change signed by %s is refused and changes nothing',
      async (signer) => {
        const before = await kb.send('guest-owner', get, { workloadClass: 'prod-web' }, GetPolicyReplySchema);
        const forged = {
          ...policy(),
          workloadClass: 'prod-web',
          workloads: ['shop-1'],
          migration: { allowed: true, targetHosts: ['evil'] },
        };
        const err = await ccmFailure(
          kb.send(signer, put, { policy: forged, expectedVersion: before.version }, PutPolicyReplySchema),
        );
        // The broker refuses a signer that may reach it (UNAUTHORIZED); the server already drops the
        // publish of one whose NATS user may not send key-broker commands (no responder: UNAVAILABLE).
        const natsMayPublish = signer === 'operator' || signer === 'saga-coordinator';
        expect(err.code).toBe(natsMayPublish ? ErrorCodes.Unauthorized : ErrorCodes.Unavailable);
        const after = await kb.send('guest-owner', get, { workloadClass: 'prod-web' }, GetPolicyReplySchema);
        expect(after.version).toBe(before.version);
        expect(after.policy.migration.targetHosts).toEqual(['host-b']);
      },
    );

    it('the operator cannot read the owner’s policies either', async () => {
      const err = await ccmFailure(
        kb.send('operator', get, { workloadClass: 'prod-web' }, GetPolicyReplySchema),
      );
      expect(err.code).toBe(ErrorCodes.Unauthorized);
    });

    it('refuses a stale version, a workload of another class, and a production policy naming a lab root', async () => {
      const stale = await ccmFailure(
        kb.send('guest-owner', put, { policy: labPolicy, expectedVersion: 0 }, PutPolicyReplySchema),
      );
      expect(stale).toMatchObject({ code: ErrorCodes.Conflict, retryable: false });
      const taken = await ccmFailure(
        kb.send(
          'guest-owner',
          put,
          { policy: { ...policy(), workloadClass: 'other', workloads: ['shop-1'] }, expectedVersion: 0 },
          PutPolicyReplySchema,
        ),
      );
      expect(taken.code).toBe(KeyBrokerErrorCodes.PolicyRejected);
      const labInProd = await ccmFailure(
        kb.send(
          'guest-owner',
          put,
          {
            policy: { ...labPolicy, workloadClass: 'p2', workloads: [], environment: 'production' },
            expectedVersion: 0,
          },
          PutPolicyReplySchema,
        ),
      );
      expect(labInProd.code).toBe(ErrorCodes.ValidationFailed);
      expect(labInProd.message).toMatch(/production policy may not trust a lab root/);
    });
  });

  describe('attest-platform (the attest-target step)', () => {
    it('grants the real host-agent’s emulated chain under the lab policy, records it and publishes it', async () => {
      const cmd = stepCommand({ workload: { id: 'web-1', kind: 'container' } });
      const reply = await kb.send(
        'saga-coordinator',
        attest,
        cmd,
        AttestPlatformReplySchema,
        `${cmd.migrationId}:attest-target:1`,
      );
      expect(reply).toMatchObject({
        hostId: 'host-b',
        platform: 'sev',
        root: 'lab:lab',
        generation: 'milan',
      });
      const ev = await pollUntil('platform-verified event', () =>
        kb.events.find((e) => e.subject === `ccm.evt.attestation.${cmd.migrationId}.platform-verified`),
      );
      const verdict = PlatformVerdictSchema.parse((JSON.parse(ev.text) as { data: unknown }).data);
      expect(verdict.rules.filter((r) => r.rule.startsWith('chain:')).map((r) => r.ok)).toEqual(
        Array(7).fill(true),
      );
      // A retry under a new attempt judges nothing again: the same verdict.
      const again = await kb.send(
        'saga-coordinator',
        attest,
        { ...cmd, attempt: 2 },
        AttestPlatformReplySchema,
        `${cmd.migrationId}:attest-target:2`,
      );
      expect(again.attestationId).toBe(reply.attestationId);
    });

    it('refuses the lab-endorsed host under a production policy, naming the rule and link', async () => {
      const cmd = stepCommand({ workload: { id: 'shop-1', kind: 'container' } });
      const err = await ccmFailure(kb.send('saga-coordinator', attest, cmd, AttestPlatformReplySchema));
      expect(err).toMatchObject({ code: KeyBrokerErrorCodes.AttestationRefused, retryable: false });
      expect(err.details).toMatchObject({ rule: 'root-trusted', reason: 'untrusted-root' });
      expect(err.effect).toBe('none');
      const rules = err.details!['rules'] as Array<{ rule: string; ok: boolean; reason?: string }>;
      expect(rules.find((r) => r.rule === 'chain:ark-self')).toMatchObject({
        ok: false,
        reason: 'untrusted-root',
      });
      await pollUntil('platform-refused event', () =>
        kb.events.find((e) => e.subject === `ccm.evt.attestation.${cmd.migrationId}.platform-refused`),
      );
    });

    it('refuses a workload no policy covers, and a target host the policy does not allow', async () => {
      const none = await ccmFailure(
        kb.send(
          'saga-coordinator',
          attest,
          stepCommand({ workload: { id: 'stranger', kind: 'container' } }),
          AttestPlatformReplySchema,
        ),
      );
      expect(none.details).toMatchObject({ rule: 'policy-covers-workload' });
      const elsewhere = await ccmFailure(
        kb.send('saga-coordinator', attest, stepCommand({ targetHost: 'host-x' }), AttestPlatformReplySchema),
      );
      expect(elsewhere.code).toBe(ErrorCodes.Unavailable);
    });

    it.each<SignerName>(['operator', 'vm-lifecycle', 'guest-owner'])(
      'a caller that is not the saga-coordinator (%s) is refused',
      async (signer) => {
        const err = await ccmFailure(kb.send(signer, attest, stepCommand(), AttestPlatformReplySchema));
        expect(err.code).toBe(ErrorCodes.Unauthorized);
      },
    );

    it('a malformed step command gets a typed validation error', async () => {
      const err = await ccmFailure(
        kb.send(
          'saga-coordinator',
          attest,
          { ...stepCommand(), workload: { id: 'a.b', kind: 'container' } },
          AttestPlatformReplySchema,
        ),
      );
      expect(err.code).toBe(ErrorCodes.ValidationFailed);
    });
  });

  describe('open-transport-session (the transport-session step of a VM migration)', () => {
    const open = subjects.cmd('key-broker', 'open-transport-session');
    const close = subjects.cmd('key-broker', 'close-transport-session');
    const vmStep = (migrationId: string, step: string, attempt = 1) =>
      stepCommand({ migrationId, step, attempt, workload: { id: 'web-2', kind: 'vm' } });
    const attested = async () => {
      const cmd = vmStep(stepCommand().migrationId, 'attest-target');
      await kb.send('saga-coordinator', attest, cmd, AttestPlatformReplySchema);
      return cmd.migrationId;
    };

    it('releases the attested target chain, verifiable by libs/sev, once per migration', async () => {
      const mig = await attested();
      const s1 = await kb.send(
        'saga-coordinator',
        open,
        vmStep(mig, 'transport-session'),
        TransportSessionReplySchema,
      );
      const platform = await kb.send(
        'operator',
        hostCommandSubject('host-b', 'platform'),
        {},
        HOST_COMMANDS.platform.reply,
      );
      expect(s1.targetChain).toEqual(platform.sev!.chain);
      const chain = decodeQemuSevMigrationParameters({
        'sev-pdh': s1.targetChain.pdh,
        'sev-plat-cert': s1.targetChain.platCert,
        'sev-amd-cert': s1.targetChain.amdCert,
      });
      expect(createHash('sha256').update(encodeSevCertificate(chain.pdh)).digest('hex')).toBe(s1.pdhSha256);
      expect(verifySevChain(chain, { extraRoots: [{ ark: kb.lab.ark, generation: 'milan' }] }).ok).toBe(true);
      const s2 = await kb.send(
        'saga-coordinator',
        open,
        vmStep(mig, 'transport-session', 2),
        TransportSessionReplySchema,
      );
      expect(s2.transportSessionId).toBe(s1.transportSessionId);
      await pollUntil('transport-session-opened event', () =>
        kb.events.find((e) => e.subject === `ccm.evt.key.${mig}.transport-session-opened`),
      );
      // Closing is the compensation: once closed, the session is not released again.
      const closed = await kb.send(
        'saga-coordinator',
        close,
        { ...vmStep(mig, 'transport-session'), kind: 'compensation' },
        StepDoneSchema,
      );
      expect(closed).toEqual({ closed: true });
      const again = await ccmFailure(
        kb.send('saga-coordinator', open, vmStep(mig, 'transport-session', 3), TransportSessionReplySchema),
      );
      expect(again.details).toMatchObject({ rule: 'session-open', reason: 'closed' });
    });

    it('refuses a migration whose target was never attested, and a caller that is not the coordinator', async () => {
      const never = await ccmFailure(
        kb.send(
          'saga-coordinator',
          open,
          vmStep(stepCommand().migrationId, 'transport-session'),
          TransportSessionReplySchema,
        ),
      );
      expect(never).toMatchObject({ code: KeyBrokerErrorCodes.AttestationRefused, retryable: false });
      expect(never.details).toMatchObject({ rule: 'target-attested' });
      const mig = await attested();
      const op = await ccmFailure(
        kb.send('operator', open, vmStep(mig, 'transport-session'), TransportSessionReplySchema),
      );
      expect(op.code).toBe(ErrorCodes.Unauthorized);
    });

    it('refuses once the owner stopped allowing the target host, though it was attested before', async () => {
      const mig = await attested();
      const cur = await kb.send('guest-owner', get, { workloadClass: 'dev-web' }, GetPolicyReplySchema);
      await kb.send(
        'guest-owner',
        put,
        {
          policy: { ...cur.policy, migration: { allowed: true, targetHosts: ['host-z'] } },
          expectedVersion: cur.version,
        },
        PutPolicyReplySchema,
      );
      try {
        const err = await ccmFailure(
          kb.send('saga-coordinator', open, vmStep(mig, 'transport-session'), TransportSessionReplySchema),
        );
        expect(err.details).toMatchObject({ rule: 'target-host-allowed', reason: 'host-not-allowed' });
      } finally {
        await kb.send(
          'guest-owner',
          put,
          { policy: cur.policy, expectedVersion: cur.version + 1 },
          PutPolicyReplySchema,
        );
      }
    });
  });

  describe('the owner’s cached CEK in platform attestation', () => {
    it('attest-platform verifies the host’s chain with the cached CEK of the same key and says so', async () => {
      const platform = await kb.send(
        'operator',
        hostCommandSubject('host-b', 'platform'),
        {},
        HOST_COMMANDS.platform.reply,
      );
      const { cek } = decodeSevPlatformCertChain(Buffer.from(platform.sev!.chain.platCert, 'base64'));
      const cekSource = async () => {
        const cmd = stepCommand({ workload: { id: 'web-2', kind: 'container' } });
        await kb.send('saga-coordinator', attest, cmd, AttestPlatformReplySchema);
        const ev = await pollUntil('platform-verified event', () =>
          kb.events.find((e) => e.subject === `ccm.evt.attestation.${cmd.migrationId}.platform-verified`),
        );
        const verdict = PlatformVerdictSchema.parse((JSON.parse(ev.text) as { data: unknown }).data);
        return verdict.rules.find((r) => r.rule === 'cek-source')?.detail;
      };
      expect(await cekSource()).toBe('host');
      const cached = await kb.send(
        'guest-owner',
        keyBrokerSubject(KEY_BROKER_VERBS.putCertificate),
        {
          kind: 'cek',
          chipId: 'c1'.repeat(64),
          certificate: encodeSevCertificate(cek).toString('base64'),
        },
        CachedCertificateSchema,
      );
      expect(await cekSource()).toBe(`cache ${cached.kdsUrl}`);
    });
  });
});
