import { Injectable } from '@nestjs/common';
import { CcmError, ErrorCodes, STEP_COMMANDS, subjects, type StepCommand } from '@ccm/contracts';
import { OnRequest, OutboxService, type MessageContext } from '@ccm/messaging';
import { updateReturning } from '@ccm/persistence';
import { type EntityManager } from 'typeorm';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';
import { MigrationKeys } from '../release/migration-keys.js';

const s = `"${KEY_BROKER_SCHEMA}"`;
const contract = STEP_COMMANDS['key-broker']['rotate-keys'];

/** The `rotate-keys` reply: what this migration's rotation revoked (ids only, never key material). */
export interface RotationResult {
  migrationId: string;
  /** The transport session closed now (absent when none was open: a container, or closed already). */
  transportSessionClosed?: string;
  /** The source placement's launch sessions whose secrets were scrubbed. */
  sourceLaunchSessionsRevoked: string[];
  /** The container migration key revoked now (absent when none was released). */
  migrationKeyRevoked?: string;
}

/**
 * `rotate` (verb `rotate-keys`), the last step of both sagas, sent only after the pivot: the
 * workload now lives on the target for good, so what was issued for the move and for the source
 * placement is revoked. Here: the migration's SEV transport session is closed, its container key
 * (if one was released) revoked and dropped by both guests, and every launch
 * session of the workload on the source host is marked `revoked` with its TEK/TIK and secrets scrubbed
 * (no launch secret is ever released for it again). Only the saga-coordinator may ask, and only for a
 * migration whose target this broker attested and granted (a made-up migration revokes nothing).
 * Recorded once per migration: a retry answers what the first rotation did.
 */
@Injectable()
export class RotateHandler {
  constructor(
    private readonly outbox: OutboxService,
    private readonly keys: MigrationKeys,
  ) {}

  @OnRequest({
    subject: subjects.cmd('key-broker', 'rotate-keys'),
    schema: contract.request,
    idempotent: true,
    allow: ['saga-coordinator'],
  })
  async rotate(cmd: StepCommand, ctx: MessageContext): Promise<RotationResult> {
    const m = ctx.manager!;
    const [done] = await m.query<Array<{ result: RotationResult }>>(
      `SELECT result FROM ${s}.rotation WHERE migration_id = $1`,
      [cmd.migrationId],
    );
    if (done) return done.result;
    await this.requireGrantedTarget(m, cmd);
    const closed = await updateReturning<{ id: string }>(
      m,
      `UPDATE ${s}.transport_session SET state = 'closed', closed_at = now()
       WHERE migration_id = $1 AND state = 'open' RETURNING id`,
      [cmd.migrationId],
    );
    const revoked = await updateReturning<{ id: string }>(
      m,
      `UPDATE ${s}.launch_session
       SET state = 'revoked', revoked_at = now(), tek = '', tik = '', identity_secret = NULL, disk_key = NULL
       WHERE host_id = $1 AND vm_id = $2 AND state <> 'revoked' RETURNING id`,
      [cmd.sourceHost, cmd.workload.id],
    );
    const key = await this.keys.revoke(m, cmd.migrationId, 'rotate', ctx.envelope.id);
    const result: RotationResult = {
      migrationId: cmd.migrationId,
      ...(closed[0] ? { transportSessionClosed: closed[0].id } : {}),
      sourceLaunchSessionsRevoked: revoked.map((r) => r.id),
      ...(key.keyId ? { migrationKeyRevoked: key.keyId } : {}),
    };
    await m.query(
      `INSERT INTO ${s}.rotation (migration_id, workload_id, source_host, target_host, result)
       VALUES ($1, $2, $3, $4, $5)`,
      [cmd.migrationId, cmd.workload.id, cmd.sourceHost, cmd.targetHost, JSON.stringify(result)],
    );
    await this.outbox.enqueue(m, subjects.evt('key', cmd.migrationId, 'rotated'), {
      type: 'key.rotated',
      data: {
        ...result,
        workloadId: cmd.workload.id,
        sourceHost: cmd.sourceHost,
        targetHost: cmd.targetHost,
      },
      correlationid: cmd.migrationId,
      causationid: ctx.envelope.id,
    });
    return result;
  }

  /** @throws CcmError CONFLICT (nothing done) unless this migration's target was attested and granted. */
  private async requireGrantedTarget(m: EntityManager, cmd: StepCommand): Promise<void> {
    const rows = await m.query<unknown[]>(
      `SELECT 1 FROM ${s}.attestation WHERE migration_id = $1 AND host_id = $2 AND workload_id = $3 AND ok`,
      [cmd.migrationId, cmd.targetHost, cmd.workload.id],
    );
    if (rows.length === 0) {
      throw new CcmError(
        ErrorCodes.Conflict,
        `no rotation for ${cmd.migrationId}: this broker never granted ${cmd.targetHost} for ${cmd.workload.id} in it`,
        { retryable: false, effect: 'none' },
      );
    }
  }
}
