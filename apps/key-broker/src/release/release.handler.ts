import { randomBytes, randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  ADMIT_GUEST_CALLERS,
  AdmitGuestRequestSchema,
  CcmError,
  EvidenceReplySchema,
  GUEST_OWNER,
  GUEST_VERBS,
  KEY_BROKER_VERBS,
  KeyBrokerErrorCodes,
  keyBrokerSubject,
  OVERLAY_ADMISSION_TYPE,
  OPERATOR,
  ReleaseLogRequestSchema,
  RevokeGuestRequestSchema,
  STEP_COMMANDS,
  subjects,
  type AdmitGuestReply,
  type KeyReleaseResult,
  type ReleaseDecision,
  type ReleaseRecord,
  type RuleResult,
  type StepCommand,
} from '@ccm/contracts';
import { MessageBus, OnRequest, OutboxService, type MessageContext } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { sealMigrationKey } from '@ccm/sealing';
import { type DataSource, type EntityManager } from 'typeorm';
import { z } from 'zod';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';
import { PolicyStore } from '../policy/policy.store.js';
import { fail, pass } from '../attest/platform-verdict.js';
import {
  judgeAcross,
  judgeGuestEvidence,
  judgeSevEvidence,
  type GuestRole,
  type JudgedGuest,
  type LaunchRecord,
} from './judge-evidence.js';
import { CertificateCache } from './certificate-cache.js';
import { GuestRevocations, type GuestRevocation } from './guest-revocations.js';
import { MigrationKeys, type KeyRevocation } from './migration-keys.js';
import { NonceRefusedError, NonceStore } from './nonces.js';
import { ReleaseLog } from './release-log.js';

const s = `"${KEY_BROKER_SCHEMA}"`;
const EVIDENCE_TIMEOUT_MS = 10_000;
const COORDINATOR = ['saga-coordinator'] as const;
/** How long the overlay admission statement of a release may be used (the overlay's default max age). */
const ADMISSION_VALID_MS = 5 * 60_000;

/** The rule a release for a migration whose key was revoked fails. */
export const MIGRATION_NOT_REVOKED = 'migration-not-revoked';

/** Rules whose failure a retry may cure (a guest that did not answer): the refusal is retryable. */
const TRANSIENT = /:evidence-received$|^key-delivered$/;

type Body = Omit<ReleaseDecision, 'seq' | 'decidedAt'>;

/**
 * The migration key, released only to two attested guests (ARCHITECTURE §9 step 5):
 *
 * - `release-migration-key` (saga step `release-key`, coordinator only): the broker asks the source
 *   and target guests itself for fresh evidence over nonces it issued for this migration (an SNP
 *   report, or for SEV/SEV-ES a MAC under the identity secret of their attested launch), judges
 *   each guest (nonce fresh and bound, report verified to a root the owner trusts, REPORT_DATA binding
 *   the guest's key, measurement, TCB floor and guest policy of the workload's class, not revoked) and
 *   both together (migration allowed to that host, no NOSEND, distinct guests, target TCB ≥ source),
 *   then seals a fresh AES-256 key to each guest's attested key and delivers it (`load-key`). Every
 *   decision goes to the signed release log. A migration gets one key: a retry answers the grant.
 *   Once its key was revoked, a release for the migration is refused (rule `migration-not-revoked`).
 * - `revoke-migration-key` (its compensation; `rotate-keys` does the same after the move);
 * - `revoke-guest`: a guest's evidence is refused from then on and it drops its keys;
 * - `release-log`: the signed records;
 * - `admit-guest` (vm-lifecycle only): a newly launched guest's first overlay admission. The broker asks
 *   it for fresh evidence over a nonce of its own, judges it as it judges a release's target (same
 *   rules, same code), logs the decision in the release log and signs the same overlay admission
 *   statement a grant carries.
 */
@Injectable()
export class ReleaseHandler {
  constructor(
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
    private readonly bus: MessageBus,
    private readonly outbox: OutboxService,
    private readonly policies: PolicyStore,
    private readonly nonces: NonceStore,
    private readonly log: ReleaseLog,
    private readonly keys: MigrationKeys,
    private readonly certs: CertificateCache,
    private readonly guests: GuestRevocations,
  ) {}

  @OnRequest({
    subject: subjects.cmd('key-broker', 'release-migration-key'),
    schema: STEP_COMMANDS['key-broker']['release-migration-key'].request,
    idempotent: true,
    allow: [...COORDINATOR],
  })
  async release(cmd: StepCommand, ctx: MessageContext): Promise<KeyReleaseResult> {
    const m = ctx.manager!;
    await m.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`key-release:${cmd.migrationId}`]);
    // After a revocation answered (the saga rolled back, or rotated after the move) no release of
    // this migration grants, nor answers its revoked grant: the command is late or re-sent.
    const revoked = await this.keys.revocationOf(m, cmd.migrationId);
    if (revoked) {
      const rule = fail(
        MIGRATION_NOT_REVOKED,
        'revoked',
        `the key of migration ${cmd.migrationId} was revoked at ${revoked.revokedAt.toISOString()} (${revoked.why}): no key is released for it again`,
      );
      throw await this.refuse(
        {
          migrationId: cmd.migrationId,
          workloadId: cmd.workload.id,
          granted: false,
          evidence: [],
          rules: [rule],
          failure: rule,
        },
        ctx.envelope.id,
      );
    }
    const done = await this.keys.granted(m, cmd.migrationId);
    if (done) return done;
    const decision = await this.decide(m, cmd, ctx);
    if (!decision.ok) throw await this.refuse(decision.body, ctx.envelope.id);
    return this.grant(m, cmd, decision.body, decision.source, decision.target, ctx.envelope.id);
  }

  @OnRequest({
    subject: subjects.cmd('key-broker', 'revoke-migration-key'),
    schema: STEP_COMMANDS['key-broker']['revoke-migration-key'].request,
    idempotent: true,
    allow: [...COORDINATOR],
  })
  revokeKey(cmd: StepCommand, ctx: MessageContext): Promise<KeyRevocation> {
    return this.keys.revoke(ctx.manager!, cmd.migrationId, `${cmd.step} ${cmd.kind}`, ctx.envelope.id);
  }

  @OnRequest({
    subject: keyBrokerSubject(KEY_BROKER_VERBS.revokeGuest),
    schema: RevokeGuestRequestSchema,
    idempotent: true,
    allow: [GUEST_OWNER, 'vm-lifecycle', ...COORDINATOR],
  })
  revokeGuest(req: z.infer<typeof RevokeGuestRequestSchema>, ctx: MessageContext): Promise<GuestRevocation> {
    return this.guests.revoke(ctx.manager!, req.vmId, req.reason, ctx.envelope.source, ctx.envelope.id);
  }

  @OnRequest({
    subject: keyBrokerSubject(KEY_BROKER_VERBS.releaseLog),
    schema: ReleaseLogRequestSchema,
    allow: [GUEST_OWNER, OPERATOR, ...COORDINATOR],
  })
  async releaseLog(req: z.infer<typeof ReleaseLogRequestSchema>): Promise<{ records: ReleaseRecord[] }> {
    return { records: await this.log.read(req.fromSeq, req.limit, req.migrationId) };
  }

  /** The source guest: named by the coordinator, else the VM this broker launched for the workload there. */
  private async sourceVm(m: EntityManager, cmd: StepCommand): Promise<string | undefined> {
    if (cmd.context.sourceVmId) return cmd.context.sourceVmId;
    const [row] = await m.query<Array<{ vm_id: string }>>(
      `SELECT vm_id FROM ${s}.launch_session WHERE host_id = $1 AND workload_id = $2 AND state <> 'revoked'
       ORDER BY created_at DESC LIMIT 1`,
      [cmd.sourceHost, cmd.workload.id],
    );
    return row?.vm_id;
  }

  private async decide(
    m: EntityManager,
    cmd: StepCommand,
    ctx: MessageContext,
  ): Promise<{ ok: boolean; body: Body; source?: JudgedGuest; target?: JudgedGuest }> {
    const body = (rules: RuleResult[], extra: Partial<Body> = {}): Body => {
      const failure = rules.find((r) => !r.ok);
      return {
        migrationId: cmd.migrationId,
        workloadId: cmd.workload.id,
        granted: false,
        evidence: [],
        rules,
        ...(failure ? { failure } : {}),
        ...extra,
      };
    };
    const targetVm = cmd.context.targetVmId!;
    const sourceVm = await this.sourceVm(m, cmd);
    if (!sourceVm) {
      const rule = fail(
        'source-guest-known',
        'no-source-guest',
        `no source VM named (context.sourceVmId) and no attested launch of ${cmd.workload.id} on ${cmd.sourceHost}`,
      );
      return { ok: false, body: body([rule]) };
    }
    const policy = await this.policies.forWorkload(cmd.workload.id, m);
    if (!policy) {
      const rule = fail(
        'policy-covers-workload',
        'no-policy',
        `no owner policy covers workload ${cmd.workload.id}`,
      );
      return { ok: false, body: body([rule]) };
    }
    const meta = { workloadClass: policy.workloadClass, policyVersion: policy.version };
    const [source, target] = await Promise.all([
      this.judgeGuest('source', sourceVm, cmd.workload.id, cmd.migrationId, policy.policy, ctx),
      this.judgeGuest('target', targetVm, cmd.workload.id, cmd.migrationId, policy.policy, ctx),
    ]);
    const rules = [
      pass('policy-covers-workload', `${policy.workloadClass} v${policy.version}`),
      ...source.rules,
      ...target.rules,
      ...judgeAcross(source, target, cmd.targetHost, policy.policy),
    ];
    const evidence = [source, target].map((g) => ({ role: g.role, vmId: g.vmId, ...g.digests }));
    const b = body(rules, { ...meta, evidence });
    return { ok: !b.failure, body: b, source, target };
  }

  /**
   * Fetches one guest's evidence over a nonce issued for it and bound to `bindingId` (the migration, or
   * an admission), spends the nonce and judges the evidence. A guest revoked, or revoked for
   * `workloadId` (the workload moved away from it), is refused before it is asked.
   */
  private async judgeGuest(
    role: GuestRole,
    vmId: string,
    workloadId: string,
    bindingId: string,
    policy: Parameters<typeof judgeGuestEvidence>[4],
    ctx: MessageContext,
  ): Promise<JudgedGuest> {
    const r = (name: string) => `${role}:${name}`;
    const rules: RuleResult[] = [];
    const out = (): JudgedGuest => ({ role, vmId, rules, digests: {} });
    const [revoked] = await this.ds.query<Array<{ workload_id: string | null }>>(
      `SELECT NULL AS workload_id FROM ${s}.revoked_guest WHERE vm_id = $1
       UNION ALL SELECT workload_id FROM ${s}.revoked_placement WHERE vm_id = $1 AND workload_id = $2`,
      [vmId, workloadId],
    );
    if (revoked) {
      rules.push(
        revoked.workload_id === null
          ? fail(r('guest-not-revoked'), 'revoked', `guest ${vmId} was revoked: its evidence is refused`)
          : fail(
              r('guest-not-revoked'),
              'placement-revoked',
              `${workloadId} moved away from guest ${vmId}: its evidence is refused for ${workloadId}`,
            ),
      );
      return out();
    }
    rules.push(pass(r('guest-not-revoked')));
    const issued = await this.nonces.issue(vmId, bindingId);
    let evidence: z.infer<typeof EvidenceReplySchema>;
    try {
      evidence = await this.bus.request(
        subjects.guestCmd(vmId, GUEST_VERBS.evidence),
        { nonce: issued.nonce, migrationId: bindingId },
        EvidenceReplySchema,
        { timeoutMs: EVIDENCE_TIMEOUT_MS, correlationId: bindingId, causationId: ctx.envelope.id },
      );
    } catch (err) {
      const e = err instanceof CcmError ? err : undefined;
      rules.push(fail(r('evidence-received'), e?.code ?? 'no-evidence', (err as Error).message));
      return out();
    }
    rules.push(pass(r('evidence-received')));
    try {
      await this.nonces.use(evidence.nonce, bindingId, vmId);
      rules.push(pass(r('nonce-fresh')));
    } catch (err) {
      if (!(err instanceof NonceRefusedError)) throw err;
      rules.push(fail(r('nonce-fresh'), `nonce-${err.fault}`, err.message));
      return { ...out(), rules };
    }
    const asked = { nonce: evidence.nonce, migrationId: bindingId };
    const reported = evidence.overlayEndpoint ? { overlayEndpoint: evidence.overlayEndpoint } : {};
    if (evidence.platform !== 'sev-snp') {
      const judged = judgeSevEvidence(role, vmId, evidence, asked, await this.launchOf(vmId), policy);
      return { ...judged, ...reported, rules: [...rules, ...judged.rules] };
    }
    // The owner's cached VCEK of this chip and TCB (or VLEK of this product line and TCB), when there
    // is one, replaces the guest's.
    const cached = await this.certs.vekFor(evidence.report);
    const judged = judgeGuestEvidence(
      role,
      vmId,
      cached ? { ...evidence, vcekChain: { ...evidence.vcekChain, vcek: cached } } : evidence,
      asked,
      policy,
    );
    judged.digests.vcekSource = cached ? 'cache' : 'guest';
    return { ...judged, ...reported, rules: [...rules, ...judged.rules] };
  }

  /** The newest attested launch of a VM whose secret was released (or revoked since): SEV evidence's anchor. */
  private async launchOf(vmId: string): Promise<LaunchRecord | undefined> {
    const [row] = await this.ds.query<
      Array<{
        id: string;
        workload_class: string;
        state: string;
        policy: string;
        launch_digest: string | null;
        identity_secret: string | null;
      }>
    >(
      `SELECT id, workload_class, state, policy, launch_digest, identity_secret FROM ${s}.launch_session
       WHERE vm_id = $1 AND state IN ('secret-released', 'revoked')
       ORDER BY coalesce(released_at, created_at) DESC LIMIT 1`,
      [vmId],
    );
    if (!row) return undefined;
    return {
      id: row.id,
      workloadClass: row.workload_class,
      state: row.state,
      policy: Number(row.policy),
      launchDigest: row.launch_digest,
      identitySecret: row.identity_secret ? Buffer.from(row.identity_secret, 'hex') : null,
    };
  }

  /**
   * The target's overlay admission: its attested X25519 key is its WireGuard key; the endpoint it
   * reported with its evidence, if any, rides along (not attested: where peers send, not who may).
   */
  private admission(target: JudgedGuest, at: Date): KeyReleaseResult['overlayAdmission'] {
    const env = this.bus.seal({
      // A statement travels inside step commands, on no subject of its own: it is bound to its type.
      natssubject: OVERLAY_ADMISSION_TYPE,
      type: OVERLAY_ADMISSION_TYPE,
      data: {
        vmId: target.vmId,
        wgPublicKey: target.publicKey!.toString('base64'),
        evidenceDigest: (target.digests.reportSha384 ?? target.digests.macSha384)!,
        verifiedAt: at.toISOString(),
        expiresAt: new Date(at.getTime() + ADMISSION_VALID_MS).toISOString(),
        ...(target.overlayEndpoint ? { endpoint: target.overlayEndpoint } : {}),
      },
    });
    return { ...env, type: OVERLAY_ADMISSION_TYPE };
  }

  /**
   * A guest's first overlay admission: fresh evidence over a nonce bound to a new admission id, judged
   * under its workload's owner policy by the release's own rules; granted or refused, the decision goes
   * to the release log. Granted: the signed statement for the guest's attested key.
   */
  @OnRequest({
    subject: keyBrokerSubject(KEY_BROKER_VERBS.admitGuest),
    schema: AdmitGuestRequestSchema,
    idempotent: true,
    allow: [...ADMIT_GUEST_CALLERS],
  })
  async admitGuest(
    req: z.infer<typeof AdmitGuestRequestSchema>,
    ctx: MessageContext,
  ): Promise<AdmitGuestReply> {
    const admissionId = `adm-${randomUUID()}`;
    const base: Body = {
      migrationId: admissionId,
      kind: 'overlay-admission',
      workloadId: req.workloadId,
      granted: false,
      evidence: [],
      rules: [],
    };
    const policy = await this.policies.forWorkload(req.workloadId, ctx.manager);
    if (!policy) {
      const rule = fail(
        'policy-covers-workload',
        'no-policy',
        `no owner policy covers workload ${req.workloadId}`,
      );
      throw await this.refuse({ ...base, rules: [rule], failure: rule }, ctx.envelope.id);
    }
    const guest = await this.judgeGuest('guest', req.vmId, req.workloadId, admissionId, policy.policy, ctx);
    const rules = [
      pass('policy-covers-workload', `${policy.workloadClass} v${policy.version}`),
      ...guest.rules,
    ];
    const failure = rules.find((r) => !r.ok);
    const body: Body = {
      ...base,
      workloadClass: policy.workloadClass,
      policyVersion: policy.version,
      evidence: [{ role: 'guest', vmId: req.vmId, ...guest.digests }],
      rules,
      ...(failure ? { failure } : { granted: true }),
    };
    if (failure) throw await this.refuse(body, ctx.envelope.id);
    const record = await this.log.append(ctx.manager!, body, ctx.envelope.id);
    return {
      vmId: req.vmId,
      admissionId,
      decision: record.decision.seq,
      admission: this.admission(guest, new Date())!,
    };
  }

  /** Logs a refusal (in a transaction of its own: the handler's is rolled back) and builds its error. */
  private async refuse(body: Body, causationId: string): Promise<CcmError> {
    const record = await this.outbox.transaction((m2) => this.log.append(m2, body, causationId));
    const f = body.failure!;
    const admission = body.kind === 'overlay-admission';
    const what = admission
      ? `overlay admission of ${body.evidence[0]?.vmId ?? 'the guest'} (${body.migrationId})`
      : `migration key for ${body.migrationId}`;
    return new CcmError(
      admission ? KeyBrokerErrorCodes.GuestAdmissionRefused : KeyBrokerErrorCodes.KeyReleaseRefused,
      `${what} refused: ${f.rule} (${f.reason ?? 'failed'}): ${f.detail ?? ''}`.trim(),
      {
        retryable: TRANSIENT.test(f.rule),
        effect: 'none',
        details: { rule: f.rule, reason: f.reason, decision: record.decision.seq, rules: body.rules },
      },
    );
  }

  /** Seals a fresh key to both attested keys, delivers it, and records the grant. */
  private async grant(
    m: EntityManager,
    cmd: StepCommand,
    body: Body,
    source: JudgedGuest | undefined,
    target: JudgedGuest | undefined,
    causationId: string,
  ): Promise<KeyReleaseResult> {
    const keyId = `mk-${randomUUID()}`;
    const guests = [source!, target!];
    const key = randomBytes(32);
    const sealed = guests.map((g) =>
      sealMigrationKey(key, g.publicKey!, { migrationId: cmd.migrationId, keyId }),
    );
    key.fill(0);
    const delivered = await Promise.allSettled(
      guests.map((g, i) =>
        this.bus.request(
          subjects.guestCmd(g.vmId, GUEST_VERBS.loadKey),
          { migrationId: cmd.migrationId, keyId, sealedKey: sealed[i].toString('base64') },
          z.object({ keyId: z.string() }).loose(),
          { timeoutMs: EVIDENCE_TIMEOUT_MS, correlationId: cmd.migrationId, causationId },
        ),
      ),
    );
    const lost = delivered.flatMap((d, i) => (d.status === 'rejected' ? [guests[i].vmId] : []));
    if (lost.length > 0) {
      await Promise.all(guests.map((g) => this.keys.drop(g.vmId, cmd.migrationId, causationId)));
      const rule = fail(
        'key-delivered',
        'guest-did-not-take-key',
        `the sealed key did not reach ${lost.join(', ')}`,
      );
      throw await this.refuse({ ...body, rules: [...body.rules, rule], failure: rule }, causationId);
    }
    const record = await this.log.append(
      m,
      { ...body, granted: true, keyId, rules: [...body.rules, pass('key-delivered')] },
      causationId,
    );
    const result: KeyReleaseResult = {
      keyId,
      migrationId: cmd.migrationId,
      sourceVmId: source!.vmId,
      targetVmId: target!.vmId,
      decision: record.decision.seq,
      overlayAdmission: this.admission(target!, new Date()),
    };
    await m.query(
      `INSERT INTO ${s}.key_release
         (migration_id, key_id, workload_id, source_vm, target_vm, decision_seq, result, state, target_public_key)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'granted', $8)`,
      [
        cmd.migrationId,
        keyId,
        cmd.workload.id,
        result.sourceVmId,
        result.targetVmId,
        result.decision,
        JSON.stringify(result),
        target!.publicKey!.toString('base64'),
      ],
    );
    return result;
  }
}
