import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import {
  CcmError,
  KeyBrokerErrorCodes,
  PlatformReplySchema,
  STEP_COMMANDS,
  subjects,
  type PlatformVerdict,
  type SevChainBase64,
  type StepCommand,
} from '@ccm/contracts';
import { OnRequest, OutboxService, type MessageContext } from '@ccm/messaging';
import { updateReturning } from '@ccm/persistence';
import { type EntityManager } from 'typeorm';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';
import { PolicyStore } from '../policy/policy.store.js';
import { CertificateCache } from '../release/certificate-cache.js';
import { judgeChain, migrationPolicyRules, verifiedChain } from './platform-verdict.js';

const s = `"${KEY_BROKER_SCHEMA}"`;
const kb = STEP_COMMANDS['key-broker'];

/** The `open-transport-session` reply (see `TransportSessionReplySchema`). */
export interface TransportSessionResult {
  transportSessionId: string;
  targetChain: SevChainBase64;
  pdhSha256: string;
  attestationId: string;
}

function refused(cmd: StepCommand, rule: string, reason: string, detail: string): CcmError {
  return new CcmError(
    KeyBrokerErrorCodes.AttestationRefused,
    `no transport session for ${cmd.migrationId} to ${cmd.targetHost}: ${rule} (${reason}): ${detail}`,
    { retryable: false, effect: 'none', details: { rule, reason } },
  );
}

/**
 * `transport-session` (verbs `open-transport-session`, `close-transport-session`): releases the target
 * chain a VM migration's SEND_START needs (PDH, PEK ‖ OCA ‖ CEK, ASK ‖ ARK in QEMU's form), only when
 * this migration's target was attested and granted, and its recorded chain still passes the owner's
 * current policy (a policy tightened since the attestation closes the door). One session per migration;
 * a retry gets the same one. Only the saga-coordinator may ask.
 */
@Injectable()
export class TransportHandler {
  constructor(
    private readonly outbox: OutboxService,
    private readonly policies: PolicyStore,
    private readonly certs: CertificateCache,
  ) {}

  @OnRequest({
    subject: subjects.cmd('key-broker', 'open-transport-session'),
    schema: kb['open-transport-session'].request,
    idempotent: true,
    allow: ['saga-coordinator'],
  })
  async open(cmd: StepCommand, ctx: MessageContext): Promise<TransportSessionResult> {
    const m = ctx.manager!;
    const existing = await this.session(m, cmd.migrationId);
    if (existing?.state === 'closed') {
      throw refused(
        cmd,
        'session-open',
        'closed',
        `session ${existing.result.transportSessionId} was closed`,
      );
    }
    if (existing) return existing.result;
    const rows = await m.query<Array<{ id: string; verdict: PlatformVerdict; evidence: unknown }>>(
      `SELECT id, verdict, evidence FROM ${s}.attestation
       WHERE migration_id = $1 AND host_id = $2 AND ok ORDER BY created_at DESC LIMIT 1`,
      [cmd.migrationId, cmd.targetHost],
    );
    const att = rows[0];
    if (!att)
      throw refused(cmd, 'target-attested', 'not-attested', `${cmd.targetHost} has no granted attestation`);
    const policy = await this.policies.forWorkload(cmd.workload.id, m);
    if (!policy || policy.workloadClass !== att.verdict.workloadClass) {
      throw refused(
        cmd,
        'policy-covers-workload',
        'no-policy',
        `no policy of ${cmd.workload.id}'s class now`,
      );
    }
    const platform = PlatformReplySchema.parse(att.evidence);
    const now = judgeChain(
      cmd.targetHost,
      platform,
      policy.policy,
      migrationPolicyRules(cmd.targetHost, policy.policy),
      await this.certs.ceks(),
    );
    if (!now.ok)
      throw refused(cmd, now.failure!.rule, now.failure!.reason ?? 'failed', now.failure!.detail ?? '');
    const result: TransportSessionResult = {
      transportSessionId: `ts-${randomUUID()}`,
      // The chain as verified: with the owner's cached CEK when the host's was replaced by it.
      targetChain: verifiedChain(platform, now),
      pdhSha256: now.pdhSha256!,
      attestationId: att.id,
    };
    await m.query(
      `INSERT INTO ${s}.transport_session (id, migration_id, host_id, attestation_id, policy_version, pdh_sha256, chain, state)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'open')`,
      [
        result.transportSessionId,
        cmd.migrationId,
        cmd.targetHost,
        att.id,
        policy.version,
        result.pdhSha256,
        JSON.stringify(result.targetChain),
      ],
    );
    await this.outbox.enqueue(m, subjects.evt('key', cmd.migrationId, 'transport-session-opened'), {
      type: 'key.transport-session-opened',
      data: { ...result, hostId: cmd.targetHost, policyVersion: policy.version, targetChain: undefined },
      correlationid: cmd.migrationId,
      causationid: ctx.envelope.id,
    });
    return result;
  }

  /** The compensation: the session is closed (a no-op when none was opened, or already closed). */
  @OnRequest({
    subject: subjects.cmd('key-broker', 'close-transport-session'),
    schema: kb['close-transport-session'].request,
    idempotent: true,
    allow: ['saga-coordinator'],
  })
  async close(cmd: StepCommand, ctx: MessageContext): Promise<{ closed: boolean }> {
    const m = ctx.manager!;
    const rows = await updateReturning<{ id: string }>(
      m,
      `UPDATE ${s}.transport_session SET state = 'closed', closed_at = now()
       WHERE migration_id = $1 AND state = 'open' RETURNING id`,
      [cmd.migrationId],
    );
    if (rows[0]) {
      await this.outbox.enqueue(m, subjects.evt('key', cmd.migrationId, 'transport-session-closed'), {
        type: 'key.transport-session-closed',
        data: { transportSessionId: rows[0].id },
        correlationid: cmd.migrationId,
        causationid: ctx.envelope.id,
      });
    }
    return { closed: rows.length > 0 };
  }

  private async session(
    m: EntityManager,
    migrationId: string,
  ): Promise<{ state: string; result: TransportSessionResult } | undefined> {
    const rows = await m.query<
      Array<{ id: string; chain: SevChainBase64; pdh_sha256: string; attestation_id: string; state: string }>
    >(`SELECT * FROM ${s}.transport_session WHERE migration_id = $1`, [migrationId]);
    const r = rows[0];
    if (!r) return undefined;
    const result = {
      transportSessionId: r.id,
      targetChain: r.chain,
      pdhSha256: r.pdh_sha256,
      attestationId: r.attestation_id,
    };
    return { state: r.state, result };
  }
}
