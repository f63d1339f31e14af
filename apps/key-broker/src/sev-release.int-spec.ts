import { type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { type INestApplication } from '@nestjs/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GUEST_OWNER,
  KEY_BROKER_VERBS,
  KeyBrokerErrorCodes,
  keyBrokerSubject,
  LAUNCH_SECRET_GUIDS,
  ReleaseLogReplySchema,
  RevokeGuestReplySchema,
  type OwnerPolicyInput,
  type RuleResult,
} from '@ccm/contracts';
import { loadIdentity } from '@ccm/keys';
import { DATA_SOURCE } from '@ccm/persistence';
import { createServiceApp } from '@ccm/runtime';
import { parseSevSecretTable } from '@ccm/sev';
import { ccmFailure } from '@ccm/testing';
import { type DataSource } from 'typeorm';
import { policyWriter, startBrokerStack, type BrokerStack } from './__fixtures__/broker-stack.js';
import { releaseClient } from './__fixtures__/release-client.js';
import { startAgent, type HostProcess } from './__fixtures__/host-process.js';
import {
  inprocSevGuest,
  type SevGuestBehaviour,
  type SevGuestMode,
} from './__fixtures__/inproc-sev-guest.js';
import { labPin } from './__fixtures__/platforms.js';
import { attestedSevLaunch, simSevLaunchDigest } from './__fixtures__/sev-launch.js';

const IMAGE = 'web-sev-image';
const WORKLOAD = 'web-1';
/** NODBG | ES: the owner launches its guests as SEV-ES. */
const GUEST_POLICY = 0x5;

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
  let spied: Array<{ subject: string; data: Buffer }> = [];
  /** Migration keys the in-process guest unsealed (kept: revocation makes it drop them). */
  const released: Buffer[] = [];

  const putPolicy = policyWriter(
    () => kb,
    () => ({
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
    }),
  );
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
          ...(vmId === 'vm-s2' ? { CCM_GUEST_OVERLAY_ENDPOINT: '10.78.0.12:51820' } : {}),
        }),
      ),
    );
  };
  const { releaseCmd, release, streamOpens, thirdCannotOpen } = releaseClient(() => kb);
  let launchSecrets: Array<{ tek: string; tik: string; identity_secret: string; disk_key: string }> = [];

  beforeAll(async () => {
    kb = await startBrokerStack(['host-a', 'host-b'], { busSpy: true });
    spied = await kb.spyAll();
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
    evil.expire = async (nonce) => {
      await ds.query(
        `UPDATE key_broker.nonce SET expires_at = now() - interval '1 second' WHERE nonce = $1`,
        [nonce],
      );
    };
    ({ app: inproc } = await createServiceApp(
      g.definition,
      kb.stack.env({ CCM_INSTANCE_ID: 'guest-vm-sx' }),
    ));
    await inproc.init();
    // Every launch's secrets, read now: a revoked guest's are scrubbed from the broker's tables.
    launchSecrets = await ds.query(
      `SELECT tek, tik, identity_secret, disk_key FROM key_broker.launch_session WHERE identity_secret IS NOT NULL`,
    );
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
    expect(await streamOpens(cmd, 'vm-s1', 'vm-s2')).toMatchObject({ id: 'c1', state: 'restored' });
    expect(await thirdCannotOpen(spied, r, 'vm-s2', 'vm-s3')).toBe('KEY_UNSEAL_FAILED');
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
    // The overlay admission of an SEV-ES target names its MAC's digest (there is no report to name),
    // and the underlay endpoint the target reported with its evidence.
    const target = rec.decision.evidence.find((e) => e.role === 'target')!;
    expect(target.macSha384).toMatch(/^[0-9a-f]{96}$/);
    expect(target.reportSha384).toBeUndefined();
    expect(r.overlayAdmission?.data).toMatchObject({
      vmId: 'vm-s2',
      evidenceDigest: target.macSha384,
      endpoint: '10.78.0.12:51820',
    });
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
    { name: 'expired nonce', mode: 'stale', failed: ['target:nonce-fresh'], reason: 'nonce-expired' },
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
    const rows = launchSecrets;
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
