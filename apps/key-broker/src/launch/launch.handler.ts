import { randomBytes, randomUUID } from 'node:crypto';
import { Inject, Injectable, Optional } from '@nestjs/common';
import {
  CcmError,
  HOST_COMMANDS,
  HOST_VERBS,
  hostCommandSubject,
  KEY_BROKER_VERBS,
  KeyBrokerErrorCodes,
  keyBrokerSubject,
  LAUNCH_CALLERS,
  LAUNCH_SECRET_GUIDS,
  LAUNCH_SECRET_PAGE,
  LaunchSecretRequestSchema,
  LaunchSessionRequestSchema,
  subjects,
  type LaunchSecretReply,
  type LaunchSessionReply,
} from '@ccm/contracts';
import { guestAgentSecretEntries, type Identity } from '@ccm/keys';
import { MessageBus, OnRequest, OutboxService, type MessageContext } from '@ccm/messaging';
import {
  buildSevSecretTable,
  decodeSevCertificate,
  decodeSevSession,
  SevLaunchStarted,
  startSevLaunch,
  verifySevLaunchMeasurement,
} from '@ccm/sev';
import { type z } from 'zod';
import { judgeChain } from '../attest/platform-verdict.js';
import { CertificateCache } from '../release/certificate-cache.js';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';
import { PolicyStore } from '../policy/policy.store.js';
import { GUEST_AGENT_IDENTITY } from './guest-agent-identity.js';

const t = `"${KEY_BROKER_SCHEMA}".launch_session`;

interface LaunchRow {
  id: string;
  host_id: string;
  vm_id: string;
  workload_id: string;
  workload_class: string;
  pdh_sha256: string;
  policy: string;
  godh: string;
  session: string;
  tek: string;
  tik: string;
  identity_secret: string | null;
  disk_key: string | null;
  state: string;
}

const refuse = (code: string, rule: string, reason: string, message: string) =>
  new CcmError(code, message, { retryable: false, effect: 'none', details: { rule, reason } });

const replyOf = (r: LaunchRow): LaunchSessionReply => ({
  launchSessionId: r.id,
  policy: Number(r.policy),
  godh: r.godh,
  session: r.session,
  pdhSha256: r.pdh_sha256,
});

/** A launch whose placement was rotated away (`rotate-keys`): its secrets are gone for good. */
const revokedRefusal = (r: LaunchRow) =>
  refuse(
    KeyBrokerErrorCodes.AttestationRefused,
    'launch-session-live',
    'revoked',
    `launch session ${r.id} of ${r.vm_id} on ${r.host_id} was revoked after the VM migrated away`,
  );

/**
 * Attested SEV launches (ARCHITECTURE §5 step 3): `launch-session` attests the host's chain under the
 * workload's policy and makes GODH + session for its PDH; `launch-secret` checks LAUNCH_MEASURE against
 * the digests the owner accepts and only then seals the VM's identity secret and disk key (and, when
 * CCM_GUEST_AGENT_KEYS_DIR is set, the guest-agent's NATS seed and signing key) into a LAUNCH_SECRET
 * packet that only that launch can open. TEK/TIK and the secrets stay in this schema.
 */
@Injectable()
export class LaunchHandler {
  constructor(
    private readonly bus: MessageBus,
    private readonly outbox: OutboxService,
    private readonly policies: PolicyStore,
    private readonly certs: CertificateCache,
    @Optional() @Inject(GUEST_AGENT_IDENTITY) private readonly guestAgent?: Identity,
  ) {}

  @OnRequest({
    subject: keyBrokerSubject(KEY_BROKER_VERBS.launchSession),
    schema: LaunchSessionRequestSchema,
    idempotent: true,
    allow: LAUNCH_CALLERS,
  })
  async session(
    req: z.infer<typeof LaunchSessionRequestSchema>,
    ctx: MessageContext,
  ): Promise<LaunchSessionReply> {
    const m = ctx.manager!;
    const [existing] = await m.query<LaunchRow[]>(`SELECT * FROM ${t} WHERE host_id = $1 AND vm_id = $2`, [
      req.hostId,
      req.vmId,
    ]);
    if (existing?.state === 'revoked') throw revokedRefusal(existing);
    if (existing) return replyOf(existing);
    const policy = await this.policies.forWorkload(req.workloadId, m);
    if (!policy) {
      throw refuse(
        KeyBrokerErrorCodes.PolicyNotFound,
        'policy-covers-workload',
        'no-policy',
        `no policy covers ${req.workloadId}`,
      );
    }
    const platform = await this.bus.request(
      hostCommandSubject(req.hostId, HOST_VERBS.platform),
      {},
      HOST_COMMANDS.platform.reply,
      {
        causationId: ctx.envelope.id,
      },
    );
    const judged = judgeChain(req.hostId, platform, policy.policy, [], await this.certs.ceks());
    if (!judged.ok || !judged.chain) {
      const f = judged.failure!;
      throw refuse(
        KeyBrokerErrorCodes.AttestationRefused,
        f.rule,
        f.reason ?? 'failed',
        `no launch on ${req.hostId}: ${f.rule} (${f.reason}): ${f.detail ?? ''}`,
      );
    }
    const started = startSevLaunch({ pdh: judged.chain.pdh, policy: policy.policy.sev.guestPolicy });
    const q = started.qemuInputs();
    const { keys } = started.snapshot();
    const [row] = await m.query<LaunchRow[]>(
      `INSERT INTO ${t} (id, host_id, vm_id, workload_id, workload_class, policy_version, pdh_sha256, policy, godh, session, tek, tik, state)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'started') RETURNING *`,
      [
        `ls-${randomUUID()}`,
        req.hostId,
        req.vmId,
        req.workloadId,
        policy.workloadClass,
        policy.version,
        judged.pdhSha256,
        q.policy,
        q.dhCertBase64,
        q.sessionBase64,
        Buffer.from(keys.tek).toString('hex'),
        Buffer.from(keys.tik).toString('hex'),
      ],
    );
    return replyOf(row);
  }

  @OnRequest({
    subject: keyBrokerSubject(KEY_BROKER_VERBS.launchSecret),
    schema: LaunchSecretRequestSchema,
    idempotent: true,
    allow: LAUNCH_CALLERS,
  })
  async secret(
    req: z.infer<typeof LaunchSecretRequestSchema>,
    ctx: MessageContext,
  ): Promise<LaunchSecretReply> {
    const m = ctx.manager!;
    const [row] = await m.query<LaunchRow[]>(`SELECT * FROM ${t} WHERE id = $1 FOR UPDATE`, [
      req.launchSessionId,
    ]);
    if (!row) {
      throw refuse(
        KeyBrokerErrorCodes.PolicyNotFound,
        'launch-session',
        'unknown',
        `no launch session ${req.launchSessionId}`,
      );
    }
    if (row.state === 'revoked') throw revokedRefusal(row);
    const policy = await this.policies.get(row.workload_class);
    const started = new SevLaunchStarted({
      policy: Number(row.policy),
      keys: { tek: Buffer.from(row.tek, 'hex'), tik: Buffer.from(row.tik, 'hex') },
      godhCertificate: decodeSevCertificate(Buffer.from(row.godh, 'base64')),
      session: decodeSevSession(Buffer.from(row.session, 'base64')),
    });
    const blob = Buffer.from(req.measurement.blob, 'base64');
    if (blob.length !== 48) {
      throw refuse(
        KeyBrokerErrorCodes.MeasurementRejected,
        'measurement-accepted',
        'malformed',
        `MEASURE blob of ${blob.length} bytes, not 48`,
      );
    }
    const tik = Buffer.from(row.tik, 'hex');
    const digest = policy.policy.sev.launchDigests.find(
      (d) =>
        verifySevLaunchMeasurement(blob, {
          ...req.measurement.platform,
          tik,
          policy: Number(row.policy),
          digest: Buffer.from(d, 'hex'),
        }).ok,
    );
    if (!digest) {
      throw refuse(
        KeyBrokerErrorCodes.MeasurementRejected,
        'measurement-accepted',
        'not-in-policy',
        `the launch of ${row.vm_id} on ${row.host_id} measured none of the ${policy.policy.sev.launchDigests.length} digests policy ${row.workload_class} v${policy.version} accepts`,
      );
    }
    const identity = row.identity_secret ? Buffer.from(row.identity_secret, 'hex') : randomBytes(32);
    const disk = row.disk_key ? Buffer.from(row.disk_key, 'hex') : randomBytes(32);
    const measured = started.verifyMeasurement(blob, {
      digest: Buffer.from(digest, 'hex'),
      platform: req.measurement.platform,
    });
    // With the guest-agent's identity held here, the guest takes its NATS seed and signing key from
    // this secret, not from a disk the host can read. The table must fit the guest's secret page.
    const table = buildSevSecretTable(
      [
        { guid: LAUNCH_SECRET_GUIDS.identity, data: identity },
        { guid: LAUNCH_SECRET_GUIDS.disk, data: disk },
        ...(this.guestAgent ? guestAgentSecretEntries(this.guestAgent) : []),
      ],
      { maxSize: LAUNCH_SECRET_PAGE.bytes },
    );
    const packet = measured.sealSecret(table);
    table.fill(0);
    await m.query(
      `UPDATE ${t} SET state = 'secret-released', launch_digest = $2, identity_secret = $3, disk_key = $4,
       released_at = coalesce(released_at, now()) WHERE id = $1`,
      [row.id, digest, identity.toString('hex'), disk.toString('hex')],
    );
    await this.outbox.enqueue(m, subjects.evt('secret', row.vm_id, 'launch-secret-released'), {
      type: 'secret.launch-secret-released',
      data: {
        launchSessionId: row.id,
        vmId: row.vm_id,
        hostId: row.host_id,
        launchDigest: digest,
        policyVersion: policy.version,
      },
      causationid: ctx.envelope.id,
    });
    return {
      launchSessionId: row.id,
      packetHeader: packet.qmp['packet-header'],
      secret: packet.qmp.secret,
      launchDigest: digest,
    };
  }
}
