import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import {
  ATTESTATION_AGGREGATE,
  CcmError,
  HOST_COMMANDS,
  HOST_VERBS,
  hostCommandSubject,
  KeyBrokerErrorCodes,
  STEP_COMMANDS,
  subjects,
  type PlatformVerdict,
  type StepCommand,
} from '@ccm/contracts';
import { MessageBus, OnRequest, OutboxService, type MessageContext } from '@ccm/messaging';
import { type EntityManager } from 'typeorm';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';
import { PolicyStore } from '../policy/policy.store.js';
import { CertificateCache } from '../release/certificate-cache.js';
import { judgePlatform } from './platform-verdict.js';

const t = `"${KEY_BROKER_SCHEMA}".attestation`;
const contract = STEP_COMMANDS['key-broker']['attest-platform'];

/** The saga-step reply of a granted verdict (`AttestPlatformReplySchema` plus what later steps use). */
export interface AttestPlatformResult {
  hostId: string;
  platform: 'sev' | 'sev-es' | 'sev-snp';
  attestationId: string;
  generation?: string;
  root?: string;
  pdhSha256?: string;
}

/** A refused verdict as the typed error the coordinator gets: not retryable, nothing to compensate. */
export function refusal(v: PlatformVerdict): CcmError {
  const f = v.failure!;
  return new CcmError(
    KeyBrokerErrorCodes.AttestationRefused,
    `platform of ${v.hostId} refused for ${v.workloadId}: ${f.rule} (${f.reason ?? 'failed'}): ${f.detail ?? ''}`.trim(),
    {
      retryable: false,
      effect: 'none',
      details: {
        attestationId: v.attestationId,
        rule: f.rule,
        reason: f.reason,
        rules: v.rules,
      },
    },
  );
}

/**
 * `attest-target` (verb `attest-platform`): the key-broker fetches the target host's SEV chain itself
 * (the host-agent's `platform`), judges it under the owner policy of the workload's class and records
 * the verdict, granted or refused, with an event on `ccm.evt.attestation.<migrationId>.…`. Only the
 * saga-coordinator may ask. A (migration, step) is judged once: a retry gets the recorded verdict.
 */
@Injectable()
export class AttestHandler {
  constructor(
    private readonly bus: MessageBus,
    private readonly outbox: OutboxService,
    private readonly policies: PolicyStore,
    private readonly certs: CertificateCache,
  ) {}

  @OnRequest({
    subject: subjects.cmd('key-broker', 'attest-platform'),
    schema: contract.request,
    idempotent: true,
    allow: ['saga-coordinator'],
  })
  async attest(cmd: StepCommand, ctx: MessageContext): Promise<AttestPlatformResult> {
    const m = ctx.manager!;
    const verdict = (await this.recorded(m, cmd)) ?? (await this.judge(m, cmd, ctx));
    if (!verdict.ok) throw refusal(verdict);
    return {
      hostId: verdict.hostId,
      platform: verdict.platform ?? 'sev',
      attestationId: verdict.attestationId,
      generation: verdict.generation,
      root: verdict.root,
      pdhSha256: verdict.pdhSha256,
    };
  }

  private async recorded(m: EntityManager, cmd: StepCommand): Promise<PlatformVerdict | undefined> {
    const rows = await m.query<Array<{ verdict: PlatformVerdict }>>(
      `SELECT verdict FROM ${t} WHERE migration_id = $1 AND step = $2`,
      [cmd.migrationId, cmd.step],
    );
    return rows[0]?.verdict;
  }

  private async judge(m: EntityManager, cmd: StepCommand, ctx: MessageContext): Promise<PlatformVerdict> {
    const attestationId = `att-${randomUUID()}`;
    const head = {
      attestationId,
      migrationId: cmd.migrationId,
      hostId: cmd.targetHost,
      workloadId: cmd.workload.id,
    };
    const policy = await this.policies.forWorkload(cmd.workload.id, m);
    let verdict: PlatformVerdict;
    let evidence: unknown = null;
    if (!policy) {
      const failure = {
        rule: 'policy-covers-workload',
        ok: false,
        reason: 'no-policy',
        detail: `no owner policy covers workload ${cmd.workload.id}`,
      };
      verdict = { ...head, ok: false, rules: [failure], failure };
    } else {
      // Unavailable or timed-out hosts throw a retryable error: nothing is recorded, a retry asks again.
      const platform = await this.bus.request(
        hostCommandSubject(cmd.targetHost, HOST_VERBS.platform),
        {},
        HOST_COMMANDS.platform.reply,
        { correlationId: cmd.migrationId, causationId: ctx.envelope.id },
      );
      evidence = platform;
      const j = judgePlatform(cmd.targetHost, platform, policy.policy, await this.certs.ceks());
      verdict = { ...head, workloadClass: policy.workloadClass, policyVersion: policy.version, ...j };
    }
    return this.record(cmd, verdict, evidence, ctx.envelope.id);
  }

  /**
   * Records a verdict and its event in a transaction of their own: a refusal is an error reply, whose
   * handler transaction the inbox rolls back, yet the refusal must stay on record. A concurrent attempt
   * of the same (migration, step) that recorded first wins; its verdict is the answer.
   */
  private record(
    cmd: StepCommand,
    verdict: PlatformVerdict,
    evidence: unknown,
    causationId: string,
  ): Promise<PlatformVerdict> {
    return this.outbox.transaction(async (m) => {
      const inserted = await m.query<unknown[]>(
        `INSERT INTO ${t} (id, migration_id, step, host_id, workload_id, workload_class, policy_version, ok, verdict, evidence)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (migration_id, step) DO NOTHING RETURNING id`,
        [
          verdict.attestationId,
          cmd.migrationId,
          cmd.step,
          cmd.targetHost,
          cmd.workload.id,
          verdict.workloadClass ?? null,
          verdict.policyVersion ?? null,
          verdict.ok,
          JSON.stringify(verdict),
          evidence === null ? null : JSON.stringify(evidence),
        ],
      );
      if (inserted.length === 0) return (await this.recorded(m, cmd))!;
      await this.outbox.enqueue(
        m,
        subjects.evt(
          ATTESTATION_AGGREGATE,
          cmd.migrationId,
          verdict.ok ? 'platform-verified' : 'platform-refused',
        ),
        {
          type: 'attestation.platform',
          data: verdict,
          correlationid: cmd.migrationId,
          causationid: causationId,
        },
      );
      return verdict;
    });
  }
}
