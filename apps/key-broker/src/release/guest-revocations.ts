import { Injectable } from '@nestjs/common';
import { subjects } from '@ccm/contracts';
import { OutboxService } from '@ccm/messaging';
import { type EntityManager } from 'typeorm';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';
import { MigrationKeys } from './migration-keys.js';

const s = `"${KEY_BROKER_SCHEMA}"`;

/** What revoking a guest did. */
export interface GuestRevocation {
  vmId: string;
  revokedAt: string;
  /** Migrations whose key the guest confirmed it dropped now. */
  keysDropped: string[];
}

/**
 * A guest's identity ends: its evidence is refused from then on (`guest-not-revoked`), its attested
 * launches are revoked with their secrets scrubbed (no release falls back to that VM), it is told to
 * drop every migration key it was released, and `ccm.evt.key.<vmId>.guest-revoked` says so. Used by
 * `revoke-guest` and by `rotate-keys` for a container migration's source guest. Idempotent: the first
 * revocation's time and reason stay.
 */
@Injectable()
export class GuestRevocations {
  constructor(
    private readonly keys: MigrationKeys,
    private readonly outbox: OutboxService,
  ) {}

  async revoke(
    m: EntityManager,
    vmId: string,
    reason: string,
    by: string,
    causationId: string,
  ): Promise<GuestRevocation> {
    await m.query(
      `INSERT INTO ${s}.revoked_guest (vm_id, reason, revoked_by) VALUES ($1, $2, $3) ON CONFLICT (vm_id) DO NOTHING`,
      [vmId, reason, by],
    );
    const [row] = await m.query<Array<{ revoked_at: Date }>>(
      `SELECT revoked_at FROM ${s}.revoked_guest WHERE vm_id = $1`,
      [vmId],
    );
    const held = await m.query<Array<{ migration_id: string }>>(
      `SELECT migration_id FROM ${s}.key_release WHERE state = 'granted' AND $1 IN (source_vm, target_vm)`,
      [vmId],
    );
    const keysDropped: string[] = [];
    for (const h of held) {
      if (await this.keys.drop(vmId, h.migration_id, causationId)) keysDropped.push(h.migration_id);
    }
    await m.query(
      `UPDATE ${s}.launch_session
       SET state = 'revoked', revoked_at = now(), tek = '', tik = '', identity_secret = NULL, disk_key = NULL
       WHERE vm_id = $1 AND state <> 'revoked'`,
      [vmId],
    );
    const revokedAt = new Date(row.revoked_at).toISOString();
    await this.outbox.enqueue(m, subjects.evt('key', vmId, 'guest-revoked'), {
      type: 'key.guest-revoked',
      data: { vmId, reason, by, revokedAt, keysDropped },
      causationid: causationId,
    });
    return { vmId, revokedAt, keysDropped };
  }
}
