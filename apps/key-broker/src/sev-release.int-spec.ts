import { type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { type INestApplication } from '@nestjs/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GUEST_OWNER,
  KEY_BROKER_VERBS,
  KeyBrokerErrorCodes,
  keyBrokerSubject,
  KeyReleaseResultSchema,
  LAUNCH_SECRET_GUIDS,
  PolicyVersionSchema,
  ReleaseLogReplySchema,
  RevokeGuestReplySchema,
  subjects,
  type OwnerPolicyInput,
  type RuleResult,
  type StepCommand,
} from '@ccm/contracts';
import { loadIdentity } from '@ccm/keys';
import { DATA_SOURCE } from '@ccm/persistence';
import { createServiceApp } from '@ccm/runtime';
import { parseSevSecretTable } from '@ccm/sev';
import { ccmFailure } from '@ccm/testing';
import { type DataSource } from 'typeorm';
import { z } from 'zod';
import { startBrokerStack, stepCommand, type BrokerStack } from './__fixtures__/broker-stack.js';
import { startAgent, type HostProcess } from './__fixtures__/host-process.js';
import {
  inprocSevGuest,
  type SevGuestBehaviour,
  type SevGuestMode,
} from './__fixtures__/inproc-sev-guest.js';
import { labPin, policy } from './__fixtures__/platforms.js';
import { attestedSevLaunch, simSevLaunchDigest } from './__fixtures__/sev-launch.js';

const IMAGE = 'web-sev-image';
const WORKLOAD = 'web-1';
/** NODBG | ES: the owner launches its guests as SEV-ES. */
const GUEST_POLICY = 0x5;
const Any = z.record(z.string(), z.unknown());

/**
 * The two-sided release for SEV-ES guests against real NATS and Postgres: each guest has an attested
 * launch on its host's software secure processor (the key-broker's launch session, measurement and
 * LAUNCH_SECRET), and proves itself with a MAC under the identity secret that launch injected. Three
 * guest-agents are built processes reading their secret tables; a fourth guest in this process plays
 * a compromised guest-agent. A bus spy records every message from before the first launch.
 */
describe('key-broker release-migration-key for SEV/SEV-ES guests', () => {
  let kb: BrokerStack;
  let ds: DataSource;
  let inproc: INestApplication;
  let evil: SevGuestBehaviour;
  const guests: HostProcess[] = [];
  const spied: Array<{ subject: string; data: Buffer }> = [];
  /** Migration keys the in-process guest unsealed (kept: revocation makes it drop them). */
  const released: Buffer[] = [];
  let policyVersion = 0;

  const putPolicy = async (over: Partial<OwnerPolicyInput> = {}) => {
    const p = policy({
      environment: 'lab',
      workloads: [WORKLOAD],
      trustedRoots: {
        amd: [],
        lab: [{ name: 'ccm-lab', generation: 'milan', arkBodySha256: labPin(kb.lab) }],
      },
      sev: {
        minFirmware: { apiMajor: 0, apiMinor: 0 },
        guestPolicy: GUEST_POLICY,
        launchDigests: [simSevLaunchDigest(IMAGE, true)],
      },
      migration: { allowed: true, targetHosts: ['host-b'] },
      ...over,
    });
    const v = await kb.send(
      GUEST_OWNER,
      keyBrokerSubject(KEY_BROKER_VERBS.putPolicy),
      { policy: p, expectedVersion: policyVersion },
      PolicyVersionSchema,
    );
    policyVersion = v.version;
  };
  const launch = (vmId: string, hostId: string) =>
    attestedSevLaunch(kb, { hostId, vmId, workloadId: WORKLOAD, image: IMAGE });
  const startGuest = async (vmId: string, hostId: string) => {
    const { secretTable, es } = await launch(vmId, hostId);
    expect(es).toBe(true);
    guests.push(
      await startAgent(
        'guest-agent',
        kb.stack.env({
          CCM_VM_ID: vmId,
          CCM_INSTANCE_ID: `guest-${vmId}`,
          CCM_GUEST_SEV: 'sev-es',
          CCM_GUEST_SECRET_TABLE: secretTable,
        }),
      ),
    );
  };
  const releaseCmd = (sourceVmId: string, targetVmId: string): StepCommand =>
    stepCommand({ step: 'release-key', context: { sourceVmId, targetVmId } });
  const release = (cmd: StepCommand) =>
    kb.send(
      'saga-coordinator',
      subjects.cmd('key-broker', 'release-migration-key'),
      cmd,
      KeyReleaseResultSchema,
    );
  const guest = (vmId: string, verb: string, data: unknown) =>
    kb.send('operator', subjects.guestCmd(vmId, verb), data, Any);

  beforeAll(async () => {
    kb = await startBrokerStack(['host-a', 'host-b'], { busSpy: true });
    const spy = await kb.stack.connectSpy();
    const sub = spy.subscribe('>');
    void (async () => {
      for await (const m of sub) spied.push({ subject: m.subject, data: Buffer.from(m.data) });
    })();
    ds = kb.broker.get<DataSource>(DATA_SOURCE);
    await putPolicy();
    await startGuest('vm-s1', 'host-a');
    await startGuest('vm-s2', 'host-b');
    await startGuest('vm-s3', 'host-b');
    // The compromised guest: launched like the others (it holds a real identity secret).
    const { secretTable } = await launch('vm-sx', 'host-b');
    const entry = parseSevSecretTable(await readFile(secretTable)).find(
      (e) => e.guid === LAUNCH_SECRET_GUIDS.identity,
    );
    const g = inprocSevGuest('vm-sx', 'sev-es', Buffer.from(entry!.data));
    evil = g.behaviour;
    ({ app: inproc } = await createServiceApp(
      g.definition,
      kb.stack.env({ CCM_INSTANCE_ID: 'guest-vm-sx' }),
    ));
    await inproc.init();
  }, 240_000);

  afterAll(async () => {
    await inproc?.close();
    await Promise.allSettled(guests.map((g) => g.stop()));
    await kb?.close();
  });

  it('grants one key to two attested SEV-ES guests: both hold it (the image stream opens), a third cannot', async () => {
    const cmd = releaseCmd('vm-s1', 'vm-s2');
    const r = await release(cmd);
    expect(r).toMatchObject({ migrationId: cmd.migrationId, sourceVmId: 'vm-s1', targetVmId: 'vm-s2' });
    await guest('vm-s1', 'run-container', { id: 'c1', pages: 16, dirtyPagesPerSec: 0 });
    const at = await guest('vm-s2', 'receive', { migrationId: cmd.migrationId, containerId: 'c1', round: 1 });
    await guest('vm-s1', 'dump', { migrationId: cmd.migrationId, containerId: 'c1', round: 1, target: at });
    const restored = await guest('vm-s2', 'restore', {
      migrationId: cmd.migrationId,
      containerId: 'c1',
      rounds: 1,
    });
    expect(restored).toMatchObject({ id: 'c1', state: 'restored' });
    const sealedToTarget = spied
      .filter((m) => m.subject === subjects.guestCmd('vm-s2', 'load-key'))
      .map(
        (m) => (JSON.parse(m.data.toString()) as { data: { sealedKey: string; migrationId: string } }).data,
      )
      .find((d) => d.migrationId === cmd.migrationId);
    const third = await ccmFailure(guest('vm-s3', 'load-key', { ...sealedToTarget, keyId: r.keyId }));
    expect(third.code).toBe('KEY_UNSEAL_FAILED');
    // The log names how each guest proved itself: the launch its secret came from, no report.
    const log = await kb.send(
      GUEST_OWNER,
      keyBrokerSubject(KEY_BROKER_VERBS.releaseLog),
      {},
      ReleaseLogReplySchema,
    );
    const rec = log.records.find((x) => x.decision.migrationId === cmd.migrationId)!;
    expect(rec.decision.granted).toBe(true);
    expect(rec.decision.evidence.map((e) => [e.role, e.platform, e.launchDigest])).toEqual([
      ['source', 'sev-es', simSevLaunchDigest(IMAGE, true)],
      ['target', 'sev-es', simSevLaunchDigest(IMAGE, true)],
    ]);
    expect(rec.decision.rules.map((x) => x.rule)).toEqual(
      expect.arrayContaining(['source:mac-verifies', 'target:launch-attested', 'target-tcb-not-lower']),
    );
  });

  it('the in-process guest, answering honestly, is granted and unseals the key (the cases below break one thing each)', async () => {
    evil.mode = 'honest';
    const cmd = releaseCmd('vm-s1', 'vm-sx');
    await release(cmd);
    expect(evil.keys.get(cmd.migrationId)).toHaveLength(32);
    released.push(Buffer.from(evil.keys.get(cmd.migrationId)!));
  });

  const cases: Array<{
    name: string;
    failed: string[];
    reason?: string;
    mode?: SevGuestMode;
    policy?: Partial<OwnerPolicyInput>;
    before?: () => Promise<void>;
  }> = [
    { name: 'wrong MAC', mode: 'wrong-mac', failed: ['target:mac-verifies'], reason: 'mac-mismatch' },
    { name: 'replayed evidence', mode: 'replay', failed: ['target:nonce-fresh'], reason: 'nonce-used' },
    {
      name: 'evidence of another migration',
      mode: 'other-migration',
      failed: ['target:nonce-fresh'],
      reason: 'nonce-other-migration',
    },
    {
      name: 'launch digest no longer in policy',
      policy: {
        sev: {
          minFirmware: { apiMajor: 0, apiMinor: 0 },
          guestPolicy: GUEST_POLICY,
          launchDigests: ['cd'.repeat(32)],
        },
      },
      failed: ['source:measurement-accepted', 'target:measurement-accepted'],
      reason: 'measurement-not-in-policy',
    },
    {
      name: 'revoked guest',
      before: async () => {
        const r = await kb.send(
          GUEST_OWNER,
          keyBrokerSubject(KEY_BROKER_VERBS.revokeGuest),
          { vmId: 'vm-sx', reason: 'test: compromised' },
          RevokeGuestReplySchema,
        );
        expect(r.keysDropped.length).toBeGreaterThan(0);
      },
      failed: ['target:guest-not-revoked'],
      reason: 'revoked',
    },
  ];

  it.each(cases)('refuses on its own: $name', async (c) => {
    if (c.policy) await putPolicy(c.policy);
    await c.before?.();
    evil.mode = c.mode ?? 'honest';
    const cmd = releaseCmd('vm-s1', 'vm-sx');
    try {
      const err = await ccmFailure(release(cmd));
      expect(err.code).toBe(KeyBrokerErrorCodes.KeyReleaseRefused);
      const details = err.details as { rule: string; reason: string; rules: RuleResult[] };
      expect(details.rules.filter((r) => !r.ok).map((r) => r.rule)).toEqual(c.failed);
      if (c.reason) expect(details.reason).toBe(c.reason);
      expect(evil.keys.has(cmd.migrationId)).toBe(false);
    } finally {
      if (c.policy) await putPolicy();
    }
  });

  it('bus spy: no launch secret, disk key, TEK/TIK, migration key, private key or NATS seed crossed the bus during launch and release', async () => {
    expect(spied.some((m) => m.subject.endsWith('.launch-secret'))).toBe(true);
    expect(spied.some((m) => m.subject.endsWith('.load-key'))).toBe(true);
    const rows = await ds.query<
      Array<{ tek: string; tik: string; identity_secret: string; disk_key: string }>
    >(
      `SELECT tek, tik, identity_secret, disk_key FROM key_broker.launch_session WHERE identity_secret IS NOT NULL`,
    );
    expect(rows).toHaveLength(4);
    // Private halves of every identity that spoke: Ed25519 signing keys, NATS seeds, the guest's X25519 key.
    const privateOf = (k: KeyObject) => Buffer.from(k.export({ format: 'jwk' }).d!, 'base64url');
    const identities = await Promise.all(
      (['key-broker', 'vm-lifecycle', GUEST_OWNER, 'saga-coordinator', 'operator'] as const).map((n) =>
        loadIdentity(kb.stack.keysDir, n),
      ),
    );
    const secrets = [
      ...rows.flatMap((r) => [r.tek, r.tik, r.identity_secret, r.disk_key].map((h) => Buffer.from(h, 'hex'))),
      ...released,
      ...identities.flatMap((i) => [privateOf(i.signingKey), Buffer.from(i.natsSeed)]),
      privateOf(evil.identity.privateKey),
    ];
    expect(released.length).toBeGreaterThan(0);
    const all = Buffer.concat(spied.map((m) => m.data));
    const text = all.toString('latin1');
    for (const s of secrets) {
      expect(s.length).toBeGreaterThanOrEqual(16);
      expect(all.includes(s)).toBe(false);
      for (const form of [s.toString('hex'), s.toString('base64'), s.toString('base64url')]) {
        expect(text.includes(form), form.slice(0, 6)).toBe(false);
      }
    }
  });
});
