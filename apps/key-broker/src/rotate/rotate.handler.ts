import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import {
  CcmError,
  ErrorCodes,
  GUEST_VERBS,
  LoadSecretReplySchema,
  STEP_COMMANDS,
  subjects,
  type SealedWorkloadSecret,
  type StepCommand,
} from '@ccm/contracts';
import { MessageBus, OnRequest, OutboxService, type MessageContext } from '@ccm/messaging';
import { updateReturning } from '@ccm/persistence';
import { sealMigrationKey } from '@ccm/sealing';
import { type EntityManager } from 'typeorm';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';
import { MigrationKeys } from '../release/migration-keys.js';

const s = `"${KEY_BROKER_SCHEMA}"`;
const contract = STEP_COMMANDS['key-broker']['rotate-keys'];
const DELIVER_TIMEOUT_MS = 10_000;

/** The `rotate-keys` reply: what this migration's rotation revoked (ids only, never key material). */
export interface RotationResult {
  migrationId: string;
  /** The transport session closed now (absent when none was open: a container, or closed already). */
  transportSessionClosed?: string;
  /** The source placement's launch sessions whose secrets were scrubbed. */
  sourceLaunchSessionsRevoked: string[];
  /** The container migration key revoked now (absent when none was released). */
  migrationKeyRevoked?: string;
  /**
   * A container migration's source guest, revoked now for this workload: its evidence is refused for
   * the workload's releases from then on (other workloads it runs are not affected).
   */
  sourcePlacementRevoked?: string;
  /** A container migration: the workload's secret, issued anew and sealed to the target guest. */
  workloadSecret?: SealedWorkloadSecret;
}

/** The rotation as its event tells it: the sealed secret's id and generation, not the blob. */
function withoutSecret({ workloadSecret, ...rest }: RotationResult) {
  return workloadSecret
    ? {
        ...rest,
        workloadSecret: {
          vmId: workloadSecret.vmId,
          secretId: workloadSecret.secretId,
          generation: workloadSecret.generation,
        },
      }
    : rest;
}

/** The granted release of a container migration: its two guests and the target's attested key. */
interface Release {
  source_vm: string;
  target_vm: string;
  target_public_key: string | null;
}

/**
 * `rotate` (verb `rotate-keys`), the last step of both sagas, sent only after the pivot: the
 * workload now lives on the target for good, so what was issued for the move and for the source
 * placement is revoked. Here: the migration's SEV transport session is closed, its container key
 * (if one was released) revoked and dropped by both guests, and every launch
 * session of the workload on the source host is marked `revoked` with its TEK/TIK and secrets scrubbed
 * (no launch secret is ever released for it again). After a container migration (a granted key
 * release) the source guest is revoked for the workload too (its evidence is refused for the
 * workload's releases from then on) and the workload's secret is issued anew to the target guest,
 * sealed to the key its release evidence bound, delivered to it (`load-secret`) and in the reply
 * (`workloadSecret`). Only the saga-coordinator may ask, and only for a migration whose
 * target this broker attested and granted (a made-up migration revokes nothing).
 * Recorded once per migration: a retry answers what the first rotation did.
 */
@Injectable()
export class RotateHandler {
  constructor(
    private readonly bus: MessageBus,
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
    // The release's lock (per migration): a second attempt arriving while the first still delivers
    // waits for it and answers what it recorded.
    await m.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`key-release:${cmd.migrationId}`]);
    const [done] = await m.query<Array<{ result: RotationResult }>>(
      `SELECT result FROM ${s}.rotation WHERE migration_id = $1`,
      [cmd.migrationId],
    );
    if (done) return done.result;
    const release = await this.requireGrantedTarget(m, cmd);
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
    if (release) {
      // A container moved between two guests: the source guest's identity ends for this workload, and
      // the target gets the workload's secret anew, sealed to the key its evidence bound.
      await this.revokePlacement(m, cmd, release, ctx.envelope.id);
      result.sourcePlacementRevoked = release.source_vm;
      if (release.target_public_key) {
        const issued = await this.issueSecret(m, cmd, release.target_vm, release.target_public_key);
        result.workloadSecret = issued.sealed;
        await this.deliverSecret(cmd, issued, ctx.envelope.id);
      }
    }
    await m.query(
      `INSERT INTO ${s}.rotation (migration_id, workload_id, source_host, target_host, result)
       VALUES ($1, $2, $3, $4, $5)`,
      [cmd.migrationId, cmd.workload.id, cmd.sourceHost, cmd.targetHost, JSON.stringify(result)],
    );
    await this.outbox.enqueue(m, subjects.evt('key', cmd.migrationId, 'rotated'), {
      type: 'key.rotated',
      data: {
        ...withoutSecret(result),
        workloadId: cmd.workload.id,
        sourceHost: cmd.sourceHost,
        targetHost: cmd.targetHost,
      },
      correlationid: cmd.migrationId,
      causationid: ctx.envelope.id,
    });
    return result;
  }

  /**
   * The source guest's placement of the workload ends: its evidence is refused for the workload's
   * releases from then on (`guest-not-revoked`), with an event. Its identity stays for the other
   * workloads it may run (`revoke-guest` ends it whole).
   */
  private async revokePlacement(
    m: EntityManager,
    cmd: StepCommand,
    release: Release,
    causationId: string,
  ): Promise<void> {
    const reason = `${cmd.workload.id} moved to ${release.target_vm} (${cmd.migrationId})`;
    await m.query(
      `INSERT INTO ${s}.revoked_placement (vm_id, workload_id, migration_id, reason) VALUES ($1, $2, $3, $4)
       ON CONFLICT (vm_id, workload_id) DO NOTHING`,
      [release.source_vm, cmd.workload.id, cmd.migrationId, reason],
    );
    await this.outbox.enqueue(m, subjects.evt('key', release.source_vm, 'placement-revoked'), {
      type: 'key.placement-revoked',
      data: { vmId: release.source_vm, workloadId: cmd.workload.id, migrationId: cmd.migrationId, reason },
      causationid: causationId,
    });
  }

  /**
   * A fresh 32-byte secret of the workload, generation one more than its last, sealed to the target's
   * attested key and bound to the migration and its id. The broker keeps its digest only.
   */
  private async issueSecret(
    m: EntityManager,
    cmd: StepCommand,
    vmId: string,
    publicKey: string,
  ): Promise<{ sealed: SealedWorkloadSecret; sha256: string }> {
    const [last] = await m.query<Array<{ generation: number | null }>>(
      `SELECT max(generation) AS generation FROM ${s}.workload_secret WHERE workload_id = $1`,
      [cmd.workload.id],
    );
    const generation = (last?.generation ?? 0) + 1;
    const secretId = `ws-${randomUUID()}`;
    const secret = randomBytes(32);
    const sealed = sealMigrationKey(secret, Buffer.from(publicKey, 'base64'), {
      migrationId: cmd.migrationId,
      keyId: secretId,
    });
    const sha256 = createHash('sha256').update(secret).digest('hex');
    secret.fill(0);
    await m.query(
      `INSERT INTO ${s}.workload_secret (id, workload_id, generation, migration_id, holder_vm, sha256)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [secretId, cmd.workload.id, generation, cmd.migrationId, vmId, sha256],
    );
    return { sealed: { vmId, secretId, generation, sealed: sealed.toString('base64') }, sha256 };
  }

  /**
   * Hands the sealed secret to the target guest (`load-secret`) and checks that the secret it opened is
   * the one issued (its SHA-256). A guest that does not answer, or holds another secret, fails the
   * rotation (retryable: the saga retries `rotate` until done; the rolled-back attempt issued nothing).
   */
  private async deliverSecret(
    cmd: StepCommand,
    issued: { sealed: SealedWorkloadSecret; sha256: string },
    causationId: string,
  ): Promise<void> {
    const { vmId, secretId, generation, sealed } = issued.sealed;
    const fail = (why: string) =>
      new CcmError(ErrorCodes.Unavailable, `the workload secret did not reach ${vmId}: ${why}`, {
        retryable: true,
        effect: 'none',
        details: { vmId, secretId },
      });
    let held: { sha256: string };
    try {
      held = await this.bus.request(
        subjects.guestCmd(vmId, GUEST_VERBS.loadSecret),
        { workloadId: cmd.workload.id, migrationId: cmd.migrationId, secretId, generation, sealed },
        LoadSecretReplySchema,
        { timeoutMs: DELIVER_TIMEOUT_MS, correlationId: cmd.migrationId, causationId },
      );
    } catch (err) {
      throw fail((err as Error).message);
    }
    if (held.sha256 !== issued.sha256) throw fail('it opened another secret');
  }

  /**
   * The migration's granted container key release, if any (its guests); else (a VM migration) the
   * target's ok platform attestation must exist.
   * @throws CcmError CONFLICT (nothing done) unless this migration's target was attested and granted,
   *   or when its key release was revoked (rolled back).
   */
  private async requireGrantedTarget(m: EntityManager, cmd: StepCommand): Promise<Release | undefined> {
    const [release] = await m.query<Array<Release & { state: string }>>(
      `SELECT source_vm, target_vm, target_public_key, state FROM ${s}.key_release
       WHERE migration_id = $1 AND workload_id = $2`,
      [cmd.migrationId, cmd.workload.id],
    );
    if (release?.state === 'revoked') {
      // Its key was revoked by the release's compensation: the migration rolled back, nothing moved.
      throw new CcmError(
        ErrorCodes.Conflict,
        `no rotation for ${cmd.migrationId}: its key release was revoked (the migration rolled back)`,
        { retryable: false, effect: 'none' },
      );
    }
    if (release) return release;
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
    return undefined;
  }
}
