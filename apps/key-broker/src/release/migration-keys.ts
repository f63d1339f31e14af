import { Injectable } from '@nestjs/common';
import { GUEST_VERBS, subjects, type KeyReleaseResult } from '@ccm/contracts';
import { MessageBus, OutboxService } from '@ccm/messaging';
import { type EntityManager } from 'typeorm';
import { z } from 'zod';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';

const s = `"${KEY_BROKER_SCHEMA}"`;
const DROP_TIMEOUT_MS = 5_000;

/** What revoking a migration's key did. */
export interface KeyRevocation {
  migrationId: string;
  keyId?: string;
  /** False when no key was ever released for the migration (nothing to revoke). */
  revoked: boolean;
  /** The guests that confirmed they dropped the key now (a guest gone counts as not confirmed). */
  droppedBy: string[];
}

/**
 * The released migration keys (ids only: the key itself exists only sealed on the wire and unsealed
 * in the two guests) and their revocation: the release is marked revoked and each guest is told to
 * drop the key.
 */
@Injectable()
export class MigrationKeys {
  constructor(
    private readonly bus: MessageBus,
    private readonly outbox: OutboxService,
  ) {}

  /** The mark a revocation of the migration's key left, if one did (a release for it is refused). */
  async revocationOf(
    m: EntityManager,
    migrationId: string,
  ): Promise<{ why: string; revokedAt: Date } | undefined> {
    const [row] = await m.query<Array<{ why: string; revoked_at: Date }>>(
      `SELECT why, revoked_at FROM ${s}.revoked_migration WHERE migration_id = $1`,
      [migrationId],
    );
    return row ? { why: row.why, revokedAt: row.revoked_at } : undefined;
  }

  async granted(m: EntityManager, migrationId: string): Promise<KeyReleaseResult | undefined> {
    const [row] = await m.query<Array<{ result: KeyReleaseResult }>>(
      `SELECT result FROM ${s}.key_release WHERE migration_id = $1`,
      [migrationId],
    );
    return row?.result;
  }

  /** Tells `vmId` to drop the migration's key; true when it confirmed. */
  async drop(vmId: string, migrationId: string, causationId?: string): Promise<boolean> {
    return this.bus
      .request(subjects.guestCmd(vmId, GUEST_VERBS.dropKey), { migrationId }, z.object({}).loose(), {
        timeoutMs: DROP_TIMEOUT_MS,
        correlationId: migrationId,
        ...(causationId ? { causationId } : {}),
      })
      .then(
        () => true,
        () => false,
      );
  }

  /**
   * Revokes a migration's key (idempotent), in the caller's transaction, with a `key.revoked` event.
   * Serialized with `release-migration-key` of the same migration (one advisory lock), so a release
   * still in flight is revoked once it granted, never after the revocation answered "nothing"; and it
   * marks the migration revoked, so a release that arrives afterwards is refused.
   */
  async revoke(
    m: EntityManager,
    migrationId: string,
    why: string,
    causationId: string,
  ): Promise<KeyRevocation> {
    // The release's own lock: a revocation that arrives while the release is still asking the guests
    // (the coordinator gave up on the step and compensates) waits for it, then revokes what it granted.
    await m.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`key-release:${migrationId}`]);
    // Marked whether or not a key was released: a release that comes later is refused.
    await m.query(
      `INSERT INTO ${s}.revoked_migration (migration_id, why, causation_id) VALUES ($1, $2, $3)
       ON CONFLICT (migration_id) DO NOTHING`,
      [migrationId, why, causationId],
    );
    const [row] = await m.query<
      Array<{ key_id: string; source_vm: string; target_vm: string; state: string }>
    >(`SELECT key_id, source_vm, target_vm, state FROM ${s}.key_release WHERE migration_id = $1 FOR UPDATE`, [
      migrationId,
    ]);
    if (!row) return { migrationId, revoked: false, droppedBy: [] };
    const droppedBy: string[] = [];
    for (const vm of [row.source_vm, row.target_vm]) {
      if (await this.drop(vm, migrationId, causationId)) droppedBy.push(vm);
    }
    if (row.state === 'granted') {
      await m.query(
        `UPDATE ${s}.key_release SET state = 'revoked', revoked_at = now() WHERE migration_id = $1`,
        [migrationId],
      );
      await this.outbox.enqueue(m, subjects.evt('key', migrationId, 'revoked'), {
        type: 'key.revoked',
        data: { migrationId, keyId: row.key_id, why, droppedBy },
        correlationid: migrationId,
        causationid: causationId,
      });
    }
    return { migrationId, keyId: row.key_id, revoked: true, droppedBy };
  }
}
