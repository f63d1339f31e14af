import { generateKeyPairSync, sign } from 'node:crypto';
import { join } from 'node:path';
import { type INestApplication } from '@nestjs/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CachedCertificateSchema,
  GUEST_OWNER,
  ListCertificatesReplySchema,
  KEY_BROKER_VERBS,
  KeyBrokerErrorCodes,
  keyBrokerSubject,
  releaseRecordHash,
  RevokeGuestReplySchema,
  SealedWorkloadSecretSchema,
  subjects,
  verifyReleaseLog,
  type OwnerPolicyInput,
  type ReleaseRecord,
  type RuleResult,
  type SignerName,
  type StepCommand,
} from '@ccm/contracts';
import { loadTrustStore, type TrustStore } from '@ccm/keys';
import { verifyEnvelope } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { generateIdentityKey, KeyUnsealError, unsealMigrationKey } from '@ccm/sealing';
import { createServiceApp } from '@ccm/runtime';
import {
  decodeSevPlatformCertChain,
  encodeSevCertificate,
  kdsCekUrl,
  kdsVcekUrl,
  kdsVlekUrl,
  parsePemBundle,
  readVekInfo,
  verifySnpEvidence,
  SevPolicyBit,
} from '@ccm/sev';
import { launchSimSnpGuest, simSnpMeasurement, SoftwareSecureProcessor } from '@ccm/sev-emulator';
import { ccmFailure, pollUntil } from '@ccm/testing';
import { type DataSource } from 'typeorm';
import { z } from 'zod';
import { policyWriter, startBrokerStack, type BrokerStack } from './__fixtures__/broker-stack.js';
import { releaseClient } from './__fixtures__/release-client.js';
import { startAgent, type HostProcess } from './__fixtures__/host-process.js';
import { NonceStore } from './release/nonces.js';
import { inprocGuest, type GuestBehaviour, type GuestMode } from './__fixtures__/inproc-guest.js';
import { labPin, vector } from './__fixtures__/platforms.js';
import { CertificateCache } from './release/certificate-cache.js';

const IMAGE = 'web-image';
const Any = z.record(z.string(), z.unknown());
const RotationSchema = z.object({
  migrationId: z.string(),
  migrationKeyRevoked: z.string().optional(),
  sourcePlacementRevoked: z.string().optional(),
  workloadSecret: SealedWorkloadSecretSchema.optional(),
});

/**
 * The two-sided migration key release against real NATS and Postgres, real guest-agents (built, as
 * processes, each a simulated SNP guest on a software secure processor of one lab) and a guest in this
 * process that plays a compromised guest-agent. A bus spy records every message from the start.
 */
describe('key-broker release-migration-key', () => {
  let kb: BrokerStack;
  let ds: DataSource;
  let trust: TrustStore;
  let inproc: INestApplication;
  let evil: GuestBehaviour;
  const guests: HostProcess[] = [];
  let spied: Array<{ subject: string; data: Buffer }> = [];
  let labRoot: { name: string; generation: 'milan'; arkBodySha256: string; arkX509Sha256: string };

  const platform = (name: string, lowerTcb = false) => {
    const base = SoftwareSecureProcessor.create(join(kb.work, `sp-${name}`), { lab: kb.lab });
    if (!lowerTcb) return base.stateDir;
    const tcb = base.config.tcb;
    return SoftwareSecureProcessor.create(join(kb.work, `sp-${name}-low`), {
      lab: kb.lab,
      tcb: { ...tcb, snp: tcb.snp - 1 },
    }).stateDir;
  };
  /** The underlay endpoint the target guest reports with its evidence (not attested). */
  const TARGET_ENDPOINT = '10.78.0.2:51820';
  const startGuest = async (vmId: string, spDir: string) => {
    guests.push(
      await startAgent(
        'guest-agent',
        kb.stack.env({
          CCM_VM_ID: vmId,
          CCM_INSTANCE_ID: `guest-${vmId}`,
          CCM_GUEST_SEV: 'emulated',
          CCM_GUEST_SEV_DIR: spDir,
          CCM_GUEST_IMAGE: IMAGE,
          ...(vmId === 'vm-tgt' ? { CCM_GUEST_OVERLAY_ENDPOINT: TARGET_ENDPOINT } : {}),
        }),
      ),
    );
  };

  /** The owner's policy for `web-1`, with `over` replacing top-level fields; a new version each call. */
  const putPolicy = policyWriter(
    () => kb,
    () => ({
      environment: 'lab',
      trustedRoots: { amd: [], lab: [labRoot] },
      snp: {
        launchDigests: [simSnpMeasurement(IMAGE).toString('hex')],
        minTcb: {},
        allowDebug: false,
        allowSmt: true,
      },
      migration: { allowed: true, targetHosts: ['host-b'] },
    }),
  );

  const { releaseCmd, release, guest, releaseLog, streamOpens, thirdCannotOpen } = releaseClient(() => kb);
  const brokerKey = (keyId: string) => {
    const k = trust.lookup(keyId);
    return k?.signer === 'key-broker' ? k.key : undefined;
  };

  beforeAll(async () => {
    kb = await startBrokerStack([], { busSpy: true });
    spied = await kb.spyAll();
    ds = kb.broker.get<DataSource>(DATA_SOURCE);
    trust = await loadTrustStore(kb.stack.keysDir);
    labRoot = {
      name: 'ccm-lab',
      generation: 'milan',
      arkBodySha256: labPin(kb.lab),
      arkX509Sha256: [...kb.lab.trustAnchors().snpTrustedArks.keys()][0],
    };
    const [a, b, low] = [platform('host-a'), platform('host-b'), platform('host-b2', true)];
    await Promise.all([
      startGuest('vm-src', a),
      startGuest('vm-tgt', b),
      startGuest('vm-third', b),
      startGuest('vm-low', low),
    ]);
    // The compromised guest: a real SNP guest on host-b's platform, answering as the test says.
    const sp = SoftwareSecureProcessor.open(b);
    sp.snpInit();
    sp.init();
    const foreign = SoftwareSecureProcessor.open(a).snpCertChain();
    const g = inprocGuest('vm-evil', sp, launchSimSnpGuest(sp, { image: IMAGE }), async (nonce) => {
      await ds.query(
        `UPDATE key_broker.nonce SET expires_at = now() - interval '1 second' WHERE nonce = $1`,
        [nonce],
      );
    });
    evil = g.behaviour;
    evil.foreignChain = {
      ark: foreign.ark.raw.toString('base64'),
      ask: foreign.ask.raw.toString('base64'),
      vcek: foreign.vek.raw.toString('base64'),
    };
    // A cloud provider's VLEK for host-b's platform (the lab endorses it as AMD would).
    const vlekKey = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    const issued = await kb.lab.issueVlek({
      publicKey: vlekKey.publicKey,
      tcb: sp.config.tcb,
      cspId: 'CN=cloud.example',
    });
    evil.vlek = {
      key: vlekKey.privateKey,
      chain: {
        ark: kb.lab.arkX509.raw.toString('base64'),
        ask: issued.asvk.raw.toString('base64'),
        vcek: issued.vlek.raw.toString('base64'),
      },
    };
    ({ app: inproc } = await createServiceApp(
      g.definition,
      kb.stack.env({ CCM_INSTANCE_ID: 'guest-vm-evil' }),
    ));
    await inproc.init();
    await putPolicy();
  }, 180_000);

  afterAll(async () => {
    await inproc?.close();
    await Promise.allSettled(guests.map((g) => g.stop()));
    await kb?.close();
  });

  let granted: { cmd: StepCommand; keyId: string; decision: number };
  const workloadSecrets: Buffer[] = [];

  it('grants one key to two attested guests: both unseal the same key (the image stream opens), a third cannot', async () => {
    const cmd = releaseCmd('vm-src', 'vm-tgt');
    const r = await release(cmd);
    expect(r).toMatchObject({ migrationId: cmd.migrationId, sourceVmId: 'vm-src', targetVmId: 'vm-tgt' });
    expect(r.keyId).toMatch(/^mk-/);
    granted = { cmd, keyId: r.keyId, decision: r.decision };
    // The overlay admission of the target: signed by the broker, the target's attested key as its
    // WireGuard key (the overlay verifies it itself), the endpoint the target reported beside it.
    const targetKey = (await guest('operator', 'vm-tgt', 'identity', {})).publicKey;
    expect(r.overlayAdmission).toMatchObject({
      type: 'ccm.overlay.admission.v1',
      source: 'key-broker',
      data: {
        vmId: 'vm-tgt',
        wgPublicKey: targetKey,
        evidenceDigest: expect.stringMatching(/^[0-9a-f]{96}$/),
        endpoint: TARGET_ENDPOINT,
      },
    });
    expect(() => verifyEnvelope(r.overlayAdmission!, trust)).not.toThrow();

    // The same key on both sides: a sealed image stream from the source opens on the target.
    expect(await streamOpens(cmd, 'vm-src', 'vm-tgt')).toMatchObject({ id: 'c1', state: 'restored' });
    // The target's sealed key, as anyone on the bus saw it, does not open in a third guest.
    const third = { code: await thirdCannotOpen(spied, r, 'vm-tgt', 'vm-third') };
    expect(third.code).toBe('KEY_UNSEAL_FAILED');
  });

  it('a retry of a granted release answers the same key id and decides nothing new', async () => {
    const before = (await releaseLog()).length;
    const again = await release({ ...granted.cmd, attempt: 2 });
    expect(again).toMatchObject({ keyId: granted.keyId, decision: granted.decision });
    expect(await releaseLog()).toHaveLength(before);
  });

  it('the in-process guest, answering honestly, is granted and unseals the key (the cases below break one thing each)', async () => {
    evil.mode = 'honest';
    const cmd = releaseCmd('vm-src', 'vm-evil');
    const r = await release(cmd);
    expect(evil.keys.get(cmd.migrationId)).toHaveLength(32);
    expect(r.targetVmId).toBe('vm-evil');
  });

  /** Each case breaks one rule; `failed` is every rule that must fail (and nothing else may). */
  const cases: Array<{
    name: string;
    failed: string[];
    reason?: string;
    source?: string;
    target?: string;
    mode?: GuestMode;
    policy?: Partial<OwnerPolicyInput>;
    before?: () => Promise<void>;
  }> = [
    {
      name: 'stale nonce',
      target: 'vm-evil',
      mode: 'stale',
      failed: ['target:nonce-fresh'],
      reason: 'nonce-expired',
    },
    {
      name: 'replayed nonce',
      target: 'vm-evil',
      mode: 'replay',
      failed: ['target:nonce-fresh'],
      reason: 'nonce-used',
    },
    {
      name: 'evidence of another migration',
      target: 'vm-evil',
      mode: 'other-migration',
      failed: ['target:nonce-fresh'],
      reason: 'nonce-other-migration',
    },
    {
      name: 'bit-flipped report',
      target: 'vm-evil',
      mode: 'bit-flip',
      failed: ['target:report-verifies'],
    },
    {
      name: 'report shown with another platform’s VCEK chain',
      target: 'vm-evil',
      mode: 'foreign-chain',
      failed: ['target:report-verifies'],
    },
    {
      name: 'measurement not in policy',
      policy: { snp: { launchDigests: ['ab'.repeat(48)], minTcb: {}, allowDebug: false, allowSmt: true } },
      failed: ['source:measurement-accepted', 'target:measurement-accepted'],
    },
    { name: 'lower target TCB', target: 'vm-low', failed: ['target-tcb-not-lower'], reason: 'tcb-rollback' },
    {
      name: 'NOSEND in the owner policy',
      policy: {
        sev: {
          minFirmware: { apiMajor: 0, apiMinor: 14 },
          guestPolicy: 0x1 | SevPolicyBit.NOSEND,
          launchDigests: [],
        },
      },
      failed: ['guest-policy-allows-send'],
      reason: 'nosend',
    },
    {
      name: 'target host not allowed',
      policy: { migration: { allowed: true, targetHosts: ['host-c'] } },
      failed: ['target-host-allowed'],
    },
    {
      name: 'guest policy bit the owner forbids (SMT)',
      policy: {
        snp: {
          launchDigests: [simSnpMeasurement(IMAGE).toString('hex')],
          minTcb: {},
          allowDebug: false,
          allowSmt: false,
        },
      },
      failed: ['source:guest-policy', 'target:guest-policy'],
    },
    {
      name: 'lab root under a production policy',
      policy: { environment: 'production', trustedRoots: { amd: ['milan', 'genoa', 'turin'], lab: [] } },
      failed: ['source:report-verifies', 'target:report-verifies'],
      reason: 'chain:untrusted-root',
    },
    {
      name: 'revoked guest',
      target: 'vm-third',
      before: async () => {
        const r = await kb.send(
          GUEST_OWNER,
          keyBrokerSubject(KEY_BROKER_VERBS.revokeGuest),
          { vmId: 'vm-third', reason: 'test: compromised' },
          RevokeGuestReplySchema,
        );
        expect(r.vmId).toBe('vm-third');
      },
      failed: ['target:guest-not-revoked'],
      reason: 'revoked',
    },
  ];

  it.each(cases)('refuses on its own: $name', async (c) => {
    if (c.policy) await putPolicy(c.policy);
    await c.before?.();
    evil.mode = c.mode ?? 'honest';
    const cmd = releaseCmd(c.source ?? 'vm-src', c.target ?? 'vm-tgt');
    try {
      const err = await ccmFailure(release(cmd));
      expect(err.code).toBe(KeyBrokerErrorCodes.KeyReleaseRefused);
      const details = err.details as { rule: string; reason: string; rules: RuleResult[]; decision: number };
      expect(details.rules.filter((r) => !r.ok).map((r) => r.rule)).toEqual(c.failed);
      expect(details.rule).toBe(c.failed[0]);
      if (c.reason) expect(details.reason).toBe(c.reason);
      expect(err.message).toContain(c.failed[0]);
      // The refusal is on the log, with the evidence digests it was reached on.
      const last = (await releaseLog()).at(-1)!;
      expect(last.decision).toMatchObject({
        seq: details.decision,
        migrationId: cmd.migrationId,
        granted: false,
      });
      expect(last.decision.failure?.rule).toBe(c.failed[0]);
    } finally {
      if (c.policy) await putPolicy();
    }
  });

  it('refuses a caller that is not the saga-coordinator (before any evidence is asked for)', async () => {
    for (const signer of ['vm-lifecycle', 'operator', 'guest-agent', GUEST_OWNER] as const) {
      const err = await ccmFailure(release(releaseCmd('vm-src', 'vm-tgt'), signer));
      expect(err.code, signer).toBe('UNAUTHORIZED');
    }
    const evidence = await ccmFailure(
      guest('operator', 'vm-src', 'evidence', { nonce: '00'.repeat(32), migrationId: 'mig-x' }),
    );
    expect(evidence.code).toBe('UNAUTHORIZED');
  });

  it('nonce: 32 fresh bytes for the coordinator, expiring within 30 s; the operator gets none', async () => {
    const n = await kb.send(
      'saga-coordinator',
      keyBrokerSubject(KEY_BROKER_VERBS.nonce),
      {},
      z.object({ nonce: z.string(), expiresAt: z.string() }),
    );
    expect(n.nonce).toMatch(/^[0-9a-f]{64}$/);
    expect(new Date(n.expiresAt).getTime() - Date.now()).toBeLessThanOrEqual(30_000);
    const err = await ccmFailure(kb.send('operator', keyBrokerSubject(KEY_BROKER_VERBS.nonce), {}, Any));
    expect(err.code).toBe('UNAUTHORIZED');

    // Single use, and each refusal is typed and names the nonce.
    const store = kb.broker.get(NonceStore);
    const refused = async (nonce: string, migrationId: string, audience: string) =>
      (await ccmFailure(store.use(nonce, migrationId, audience))).details;
    const fresh = await store.issue('vm-x', 'mig-1');
    await store.use(fresh.nonce, 'mig-1', 'vm-x');
    expect(await refused(fresh.nonce, 'mig-1', 'vm-x')).toEqual({ nonce: fresh.nonce, reason: 'used' });
    const old = await store.issue('vm-x', 'mig-1');
    await ds.query(`UPDATE key_broker.nonce SET expires_at = now() - interval '1 second' WHERE nonce = $1`, [
      old.nonce,
    ]);
    expect(await refused(old.nonce, 'mig-1', 'vm-x')).toEqual({ nonce: old.nonce, reason: 'expired' });
    expect(await refused('ab'.repeat(32), 'mig-1', 'vm-x')).toMatchObject({ reason: 'unknown' });
    const elsewhere = await store.issue('vm-x', 'mig-1');
    expect(await refused(elsewhere.nonce, 'mig-1', 'vm-y')).toMatchObject({ reason: 'other-audience' });
  });

  it('revoke-migration-key: both guests drop the key; a retry revokes nothing new', async () => {
    const revoke = (attempt: number) =>
      kb.send(
        'saga-coordinator',
        subjects.cmd('key-broker', 'revoke-migration-key'),
        { ...granted.cmd, kind: 'compensation', attempt },
        Any,
      );
    const r = await revoke(1);
    expect(r).toMatchObject({ revoked: true, keyId: granted.keyId, droppedBy: ['vm-src', 'vm-tgt'] });
    const noKey = await ccmFailure(
      guest('operator', 'vm-tgt', 'receive', {
        migrationId: granted.cmd.migrationId,
        containerId: 'c1',
        round: 2,
      }),
    );
    expect(noKey.code).toBe('NO_MIGRATION_KEY');
    expect(await revoke(2)).toMatchObject({ revoked: true, keyId: granted.keyId });
    await pollUntil('key.revoked event', () =>
      kb.events.some((e) => e.subject === subjects.evt('key', granted.cmd.migrationId, 'revoked')),
    );
  });

  it('a release that arrives after its revocation answered is refused (a late or re-sent command after a rollback): no evidence asked, no key sealed', async () => {
    const revoke = (cmd: StepCommand) =>
      kb.send(
        'saga-coordinator',
        subjects.cmd('key-broker', 'revoke-migration-key'),
        { ...cmd, kind: 'compensation' },
        Any,
      );
    // The attacker's order: the compensation answers "nothing to revoke", then the release comes.
    const cmd = releaseCmd('vm-src', 'vm-tgt');
    expect(await revoke(cmd)).toMatchObject({ revoked: false });
    const before = (await releaseLog()).length;
    for (const attempt of [1, 2]) {
      const err = await ccmFailure(release({ ...cmd, attempt }));
      expect(err).toMatchObject({
        code: 'KEY_RELEASE_REFUSED',
        retryable: false,
        effect: 'none',
        details: { rule: 'migration-not-revoked', reason: 'revoked' },
      });
      expect(err.message).toContain(`the key of migration ${cmd.migrationId} was revoked`);
    }
    const mine = (m: { subject: string; data: Buffer }) => m.data.toString().includes(cmd.migrationId);
    expect(spied.filter((m) => m.subject.endsWith('.load-key')).filter(mine)).toEqual([]);
    expect(spied.filter((m) => m.subject.endsWith('.evidence')).filter(mine)).toEqual([]);
    const refusals = (await releaseLog()).slice(before);
    expect(
      refusals.map((r) => [r.decision.migrationId, r.decision.granted, r.decision.failure?.rule]),
    ).toEqual([
      [cmd.migrationId, false, 'migration-not-revoked'],
      [cmd.migrationId, false, 'migration-not-revoked'],
    ]);
    // A migration granted, then revoked, no longer gets its grant back on a new attempt either.
    const late = await ccmFailure(release({ ...granted.cmd, attempt: 3 }));
    expect(late).toMatchObject({ code: 'KEY_RELEASE_REFUSED', details: { rule: 'migration-not-revoked' } });
  });

  it('the release log verifies, is published as events, and names the record a tamperer touched', async () => {
    const log = await releaseLog();
    const verdict = verifyReleaseLog(log, brokerKey);
    expect(verdict).toMatchObject({ ok: true, records: log.length });
    expect(log.length).toBeGreaterThanOrEqual(cases.length + 2);
    await pollUntil('every decision published', () =>
      log.every((r) =>
        kb.events.some(
          (e) =>
            e.subject === subjects.evt('key', r.decision.migrationId, 'release-decided') &&
            e.text.includes(r.hash),
        ),
      ),
    );

    const copy = (): ReleaseRecord[] => structuredClone(log);
    const failure = (records: ReleaseRecord[]) => {
      const v = verifyReleaseLog(records, brokerKey);
      if (v.ok) throw new Error('a tampered log verified');
      return v.failure;
    };
    const payload = copy();
    payload[2].decision.granted = !payload[2].decision.granted;
    expect(failure(payload)).toMatchObject({ index: 2, seq: 3, reason: 'hash' });

    const rehashed = copy();
    rehashed[3].decision.rules = [];
    rehashed[3].hash = releaseRecordHash(rehashed[3].decision, rehashed[3].prevHash);
    expect(failure(rehashed)).toMatchObject({ seq: 4, reason: 'signature' });

    const signature = copy();
    signature[1].signature = signature[0].signature;
    expect(failure(signature)).toMatchObject({ seq: 2, reason: 'signature' });

    const order = copy();
    [order[4], order[5]] = [order[5], order[4]];
    expect(failure(order)).toMatchObject({ index: 4, seq: 6, reason: 'order' });

    const deleted = copy();
    deleted.splice(3, 1);
    expect(failure(deleted)).toMatchObject({ index: 3, seq: 5, reason: 'gap' });

    const foreign = copy();
    const op = await kb.stack.identity('operator');
    foreign[1].signerKey = op.keyId;
    foreign[1].signature = sign(null, Buffer.from(foreign[1].hash, 'hex'), op.signingKey).toString('base64');
    expect(failure(foreign)).toMatchObject({ seq: 2, reason: 'signer' });
  });

  it('certificate cache: the owner files a VCEK under its KDS URL, and the release verifies with it rather than the guest’s', async () => {
    const put = (signer: SignerName, data: unknown) =>
      kb.send(signer, keyBrokerSubject(KEY_BROKER_VERBS.putCertificate), data, CachedCertificateSchema);
    const chain = evil.sp.snpCertChain();
    const info = readVekInfo(chain.vek.raw);
    const vcek = await put(GUEST_OWNER, { kind: 'vcek', der: chain.vek.raw.toString('base64') });
    expect(vcek).toMatchObject({ kind: 'vcek', productLine: 'milan', addedBy: GUEST_OWNER });
    expect(vcek.kdsUrl).toBe(kdsVcekUrl(info.generation, info.hwId!, info.tcb));
    expect(vcek.kdsUrl).toMatch(
      /^https:\/\/kdsintf\.amd\.com\/vcek\/v1\/Milan\/[0-9a-f]{128}\?blSPL=\d+&teeSPL=/,
    );
    const { cek } = decodeSevPlatformCertChain(evil.sp.pdhCertExport().certChain);
    const chipId = evil.sp.getId();
    const cached = await put(GUEST_OWNER, {
      kind: 'cek',
      chipId: chipId.toString('hex'),
      certificate: encodeSevCertificate(cek).toString('base64'),
    });
    expect(cached.kdsUrl).toBe(kdsCekUrl(chipId));
    const list = await kb.send(
      GUEST_OWNER,
      keyBrokerSubject(KEY_BROKER_VERBS.listCertificates),
      {},
      ListCertificatesReplySchema,
    );
    expect(list.certificates.map((c) => c.kind)).toEqual(['cek', 'vcek']);
    // Refused: anyone but the owner, and a certificate that is not what it claims.
    expect(
      (await ccmFailure(put('operator', { kind: 'vcek', der: chain.vek.raw.toString('base64') }))).code,
    ).toBe('UNAUTHORIZED');
    const ask = await ccmFailure(put(GUEST_OWNER, { kind: 'vcek', der: chain.ask.raw.toString('base64') }));
    expect(ask).toMatchObject({ code: 'CERTIFICATE_REJECTED', details: { reason: 'not-a-vcek' } });
    const notCek = await ccmFailure(
      put(GUEST_OWNER, {
        kind: 'cek',
        chipId: chipId.toString('hex'),
        certificate: chain.vek.raw.toString('base64'),
      }),
    );
    expect(notCek).toMatchObject({ code: 'CERTIFICATE_REJECTED', details: { reason: 'not-a-cek' } });

    // The guest shows another platform's VCEK: refused before, now its chip's cached VCEK is used.
    evil.mode = 'foreign-chain';
    const cmd = releaseCmd('vm-src', 'vm-evil');
    await release(cmd);
    expect(evil.keys.has(cmd.migrationId)).toBe(true);
    const rec = (await releaseLog()).find((x) => x.decision.migrationId === cmd.migrationId)!;
    expect(rec.decision.evidence.map((e) => [e.role, e.vcekSource])).toEqual([
      ['source', 'guest'],
      ['target', 'cache'],
    ]);
    evil.mode = 'honest';
  });

  it('certificate cache: the owner files a real VLEK under its VLEK chain URL; a VLEK-signed report finds it there', async () => {
    const put = (kind: string, der: Buffer) =>
      kb.send(
        GUEST_OWNER,
        keyBrokerSubject(KEY_BROKER_VERBS.putCertificate),
        { kind, der: der.toString('base64') },
        CachedCertificateSchema,
      );
    const vlekDer = vector('snp/reports/trustee-milan-vlek/vlek.der');
    const report = vector('snp/reports/trustee-milan-vlek/report.bin');
    const info = readVekInfo(vlekDer);
    const vlek = await put('vlek', vlekDer);
    expect(vlek).toMatchObject({
      kind: 'vlek',
      productLine: 'milan',
      cspId: 'CN=cc-us-east-2.amazonaws.com',
      kdsUrl: kdsVlekUrl('milan', info.tcb, info.cspId),
    });
    expect(vlek.kdsUrl.startsWith('https://kdsintf.amd.com/vlek/v1/Milan/cert_chain#')).toBe(true);
    const listed = await kb.send(
      GUEST_OWNER,
      keyBrokerSubject(KEY_BROKER_VERBS.listCertificates),
      { kind: 'vlek' },
      ListCertificatesReplySchema,
    );
    expect(listed.certificates.map((c) => c.kdsUrl)).toEqual([vlek.kdsUrl]);
    // A VLEK is not a VCEK, nor a VCEK a VLEK.
    expect(await ccmFailure(put('vcek', vlekDer))).toMatchObject({
      code: 'CERTIFICATE_REJECTED',
      details: { reason: 'not-a-vcek' },
    });
    const vcekDer = evil.sp.snpCertChain().vek.raw;
    expect(await ccmFailure(put('vlek', vcekDer))).toMatchObject({
      code: 'CERTIFICATE_REJECTED',
      details: { reason: 'not-a-vlek' },
    });

    // The release's lookup: the real VLEK-signed report (CHIP_ID zero) gets the cached VLEK of its
    // product line and REPORTED_TCB, which verifies it under AMD's Milan ARK through the real ASVK.
    const cache = kb.broker.get(CertificateCache);
    const cached = await cache.vekFor(report.toString('base64'));
    expect(cached).toBe(vlekDer.toString('base64'));
    const [asvk, ark] = parsePemBundle(vector('snp/amd-ca/milan/asvk_ark_kds_vlek_chain.pem').toString());
    const verdict = verifySnpEvidence(
      report,
      { ark, ask: asvk, vek: Buffer.from(cached!, 'base64') },
      { now: new Date('2025-06-01T00:00:00Z') },
    );
    expect(verdict.ok).toBe(true);
    // Another TCB (REPORTED_TCB's SNP SPL changed) finds no cached VLEK; nor does a report it did not sign.
    const otherTcb = Buffer.from(report);
    otherTcb[0x180 + 6] ^= 0x01;
    expect(await cache.vekFor(otherTcb.toString('base64'))).toBeUndefined();
    const forged = Buffer.from(report);
    forged[0x50] ^= 0x01;
    expect(await cache.vekFor(forged.toString('base64'))).toBeUndefined();
  });

  it('VLEK: a guest whose platform signs with its cloud provider’s VLEK (lab ARK → ASVK → VLEK) is granted; the cached VLEK of its TCB replaces one it shows', async () => {
    evil.mode = 'vlek';
    try {
      const first = releaseCmd('vm-src', 'vm-evil');
      await release(first);
      expect(evil.keys.has(first.migrationId)).toBe(true);
      const digestOf = async (migrationId: string) =>
        (await releaseLog())
          .find((x) => x.decision.migrationId === migrationId)!
          .decision.evidence.find((e) => e.role === 'target')!;
      expect((await digestOf(first.migrationId)).vcekSource).toBe('guest');

      // The guest shows another VLEK of the same provider and TCB (not the key that signed its report):
      // refused, until the owner caches the VLEK that did sign it.
      const other = await kb.lab.issueVlek({
        publicKey: generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey,
        tcb: evil.sp.config.tcb,
        cspId: 'CN=cloud.example',
      });
      const own = evil.vlek!.chain;
      evil.vlek = { ...evil.vlek!, chain: { ...own, vcek: other.vlek.raw.toString('base64') } };
      const refused = await ccmFailure(release(releaseCmd('vm-src', 'vm-evil')));
      expect(refused.details).toMatchObject({ rule: 'target:report-verifies' });
      const cached = await kb.send(
        GUEST_OWNER,
        keyBrokerSubject(KEY_BROKER_VERBS.putCertificate),
        { kind: 'vlek', der: own.vcek },
        CachedCertificateSchema,
      );
      expect(cached).toMatchObject({ kind: 'vlek', cspId: 'CN=cloud.example', productLine: 'milan' });
      const second = releaseCmd('vm-src', 'vm-evil');
      await release(second);
      expect(evil.keys.has(second.migrationId)).toBe(true);
      expect((await digestOf(second.migrationId)).vcekSource).toBe('cache');
      evil.vlek = { ...evil.vlek, chain: own };
    } finally {
      evil.mode = 'honest';
    }
  });

  it('rotate after the move: the source guest is revoked for the workload, the target gets the workload secret sealed to its attested key', async () => {
    evil.mode = 'honest';
    const cmd = releaseCmd('vm-src', 'vm-evil');
    const granted = await release(cmd);
    const rotate = (attempt: number) =>
      kb.send(
        'saga-coordinator',
        subjects.cmd('key-broker', 'rotate-keys'),
        { ...cmd, step: 'rotate', attempt },
        RotationSchema,
      );
    // Two attempts at once (a retry while the first still delivers): one rotation, both answer it.
    const [r, concurrent] = await Promise.all([rotate(1), rotate(2)]);
    expect(concurrent).toEqual(r);
    expect(r).toMatchObject({
      migrationId: cmd.migrationId,
      migrationKeyRevoked: granted.keyId,
      sourcePlacementRevoked: 'vm-src',
      workloadSecret: { vmId: 'vm-evil', secretId: expect.stringMatching(/^ws-/), generation: 1 },
    });
    expect(evil.keys.has(cmd.migrationId)).toBe(false);
    // Only the target's attested identity key opens the workload's secret.
    const ws = r.workloadSecret!;
    const binding = { migrationId: cmd.migrationId, keyId: ws.secretId };
    const secret = unsealMigrationKey(Buffer.from(ws.sealed, 'base64'), evil.identity, binding);
    expect(secret).toHaveLength(32);
    workloadSecrets.push(secret);
    // The broker delivered it to the target guest (`load-secret`), which holds the same secret.
    expect(evil.secrets.get(cmd.workload.id)).toEqual(secret);
    expect(() =>
      unsealMigrationKey(Buffer.from(ws.sealed, 'base64'), generateIdentityKey(), binding),
    ).toThrow(KeyUnsealError);
    // A retry answers what the first rotation did (no second secret, no second revocation).
    expect(await rotate(3)).toEqual(r);
    await pollUntil('placement-revoked and rotated events', () =>
      [
        subjects.evt('key', 'vm-src', 'placement-revoked'),
        subjects.evt('key', cmd.migrationId, 'rotated'),
      ].every((subject) => kb.events.some((e) => e.subject === subject)),
    );
    const rotated = kb.events.find((e) => e.subject === subjects.evt('key', cmd.migrationId, 'rotated'))!;
    expect(rotated.text).toContain(ws.secretId);
    expect(rotated.text).not.toContain(ws.sealed);

    // The attacker keeps the source guest: its fresh evidence is refused for any new release of the
    // workload, as source or target, before a nonce is even issued to it.
    for (const [source, target, rule] of [
      ['vm-src', 'vm-tgt', 'source:guest-not-revoked'],
      ['vm-tgt', 'vm-src', 'target:guest-not-revoked'],
    ]) {
      const err = await ccmFailure(release(releaseCmd(source, target)));
      expect(err).toMatchObject({
        code: KeyBrokerErrorCodes.KeyReleaseRefused,
        details: { rule, reason: 'placement-revoked' },
      });
      const failed = (err.details as { rules: RuleResult[] }).rules.filter((x) => !x.ok).map((x) => x.rule);
      expect(failed).toEqual([rule]);
    }
    // The target, where the workload lives now, is granted the next move's key.
    const next = releaseCmd('vm-evil', 'vm-tgt');
    expect(await release(next)).toMatchObject({ sourceVmId: 'vm-evil', targetVmId: 'vm-tgt' });
    expect(evil.keys.get(next.migrationId)).toHaveLength(32);
    // Another workload still running in the source guest keeps it: its move is granted.
    await putPolicy({ workloads: ['web-1', 'web-2'] });
    try {
      const other = releaseCmd('vm-src', 'vm-tgt', { workload: { id: 'web-2', kind: 'container' } });
      expect(await release(other)).toMatchObject({ sourceVmId: 'vm-src', targetVmId: 'vm-tgt' });
    } finally {
      await putPolicy();
    }
  });

  it('rotate-keys of a migration whose key release was revoked (rolled back) revokes no guest', async () => {
    const cmd = releaseCmd('vm-evil', 'vm-tgt');
    await release(cmd);
    await kb.send(
      'saga-coordinator',
      subjects.cmd('key-broker', 'revoke-migration-key'),
      { ...cmd, kind: 'compensation' },
      Any,
    );
    const err = await ccmFailure(
      kb.send('saga-coordinator', subjects.cmd('key-broker', 'rotate-keys'), { ...cmd, step: 'rotate' }, Any),
    );
    expect(err).toMatchObject({ code: 'CONFLICT', effect: 'none' });
    expect(err.message).toMatch(/key release was revoked/);
    expect((await release(releaseCmd('vm-evil', 'vm-tgt'))).sourceVmId).toBe('vm-evil');
  });

  it('bus spy: no migration key or workload secret crossed the bus, raw, hex or base64', () => {
    const keys = [...evil.keys.values(), ...workloadSecrets];
    expect(workloadSecrets.length).toBeGreaterThan(0);
    expect(keys.length).toBeGreaterThan(0);
    expect(spied.some((m) => m.subject.endsWith('.load-key'))).toBe(true);
    const all = Buffer.concat(spied.map((m) => m.data));
    const text = all.toString('latin1');
    for (const key of keys) {
      expect(all.includes(key)).toBe(false);
      for (const form of [key.toString('hex'), key.toString('base64'), key.toString('base64url')]) {
        expect(text.includes(form), form.slice(0, 6)).toBe(false);
      }
    }
  });
});
