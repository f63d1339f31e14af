import { Inject, Injectable } from '@nestjs/common';
import { MESSAGING_OPTIONS, type MessagingOptions } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type DataSource } from 'typeorm';
import { type CoordinatorConfig } from '../config.js';
import { updateReturning } from '@ccm/persistence';
import { MIGRATION } from '../db/schema.js';
import { rowColumns, toSagaRow, type RawRow, type SagaRow } from './store.js';
import { notify } from './wakeups.js';

/** Most sagas one replica takes over in one scan, so a restarted fleet spreads the work. */
export const MAX_TAKEOVER_PER_SCAN = 64;

/** A saga this replica just took over, and whose lease it was (for the log). */
export interface TakenOver {
  readonly row: SagaRow;
  readonly previousOwner: string | null;
}

/**
 * Leases on sagas: the replica named in `lease_owner` drives the saga (sends its commands, fires its
 * timers) until `lease_until`, and renews every third of the lease. A lease that lapses (the replica
 * died or stalled) is taken by another replica with `FOR UPDATE SKIP LOCKED`, so replicas scanning
 * at once never take the same saga. Times are the database's, so replicas' clocks need not agree.
 */
@Injectable()
export class Leases {
  constructor(
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
    @Inject(MESSAGING_OPTIONS) private readonly opts: MessagingOptions,
    @Inject(SERVICE_CONFIG) private readonly config: CoordinatorConfig,
  ) {}

  get leaseMs(): number {
    return this.config.CCM_SAGA_LEASE_MS;
  }

  /** Extends every lease this replica holds; returns the ids it still holds. */
  async renew(): Promise<Set<string>> {
    const rows = await updateReturning<{ id: string }>(
      this.ds,
      `UPDATE ${MIGRATION} SET lease_until = now() + $2 * interval '1 millisecond'
       WHERE lease_owner = $1 AND ended_at IS NULL RETURNING id`,
      [this.opts.instanceId, this.leaseMs],
    );
    return new Set(rows.map((r) => r.id));
  }

  /** Takes running sagas whose lease is free or lapsed. */
  async takeOver(): Promise<TakenOver[]> {
    const rows = await updateReturning<RawRow & { previous_owner: string | null }>(
      this.ds,
      `WITH free AS (
         SELECT id, lease_owner AS previous_owner FROM ${MIGRATION}
         WHERE ended_at IS NULL AND admitted_at IS NOT NULL AND (lease_owner IS NULL OR lease_until < now())
         ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)
       UPDATE ${MIGRATION} m SET lease_owner = $2, lease_until = now() + $1 * interval '1 millisecond'
       FROM free WHERE m.id = free.id
       RETURNING free.previous_owner, ${rowColumns('m')}`,
      [this.leaseMs, this.opts.instanceId, MAX_TAKEOVER_PER_SCAN],
    );
    return rows.map((r) => ({ row: toSagaRow(r), previousOwner: r.previous_owner }));
  }

  /** Ids of held sagas with a timer due by now (epoch ms). */
  async due(now: number): Promise<string[]> {
    const rows = await this.ds.query<Array<{ id: string }>>(
      `SELECT id FROM ${MIGRATION} WHERE lease_owner = $1 AND ended_at IS NULL AND wake_at <= $2`,
      [this.opts.instanceId, now],
    );
    return rows.map((r) => r.id);
  }

  /** Hands every lease back (shutdown) and tells the other replicas to take them now. */
  async releaseAll(): Promise<number> {
    return this.ds.transaction(async (m) => {
      const rows = await updateReturning(
        m,
        `UPDATE ${MIGRATION} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 RETURNING id`,
        [this.opts.instanceId],
      );
      if (rows.length) await notify(m, { kind: 'released' });
      return rows.length;
    });
  }
}
