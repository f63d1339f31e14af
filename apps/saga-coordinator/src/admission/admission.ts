import { Inject, Injectable, Logger } from '@nestjs/common';
import { MESSAGING_OPTIONS, type MessagingOptions } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type DataSource, type EntityManager } from 'typeorm';
import { type CoordinatorConfig } from '../config.js';
import { CLOCK, MIGRATION } from '../db/schema.js';
import { SagaStore, rowColumns, toSagaRow, type Applied, type RawRow } from '../saga/store.js';
import { AdmissionLimits, type Slot } from './limits.js';
import { tryLockForAdmission } from './lock.js';

/** How far down the queue one pass looks for a migration whose hosts have room. */
export const QUEUE_SCAN_DEPTH = 500;

/**
 * Admission control. Migrations wait in `Pending` until a pass admits them: highest priority first
 * (evacuation, maintenance, user), then in arrival order, while the global limit and the limits of
 * both their source and target host allow; a migration whose host is full is passed over for one
 * behind it whose hosts have room. Admitting takes the slot, the lease (this replica will drive the
 * saga) and feeds `Started`, all in one transaction under an advisory lock (see `lockForRelease`).
 */
@Injectable()
export class Admission {
  private readonly log = new Logger('Admission');
  private running?: Promise<void>;
  private again = false;
  private listener: (a: Applied) => void = () => undefined;

  constructor(
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
    @Inject(MESSAGING_OPTIONS) private readonly opts: MessagingOptions,
    @Inject(SERVICE_CONFIG) private readonly config: CoordinatorConfig,
    private readonly store: SagaStore,
  ) {}

  /** Called with every saga this replica admitted, after the admitting transaction committed. */
  onAdmitted(listener: (a: Applied) => void): void {
    this.listener = listener;
  }

  /** Runs a pass now, or once more right after the one running. Never throws. */
  pass(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          const admitted = await this.ds.transaction((m) => this.once(m));
          for (const a of admitted) this.listener(a);
        } catch (err) {
          this.log.warn(`admission pass failed: ${(err as Error).message}`);
        }
      } while (this.again);
    })().finally(() => (this.running = undefined));
    return this.running;
  }

  private async once(m: EntityManager): Promise<Applied[]> {
    // Busy: another replica is admitting, or a slot is being released (its wake-up brings us back).
    if (!(await tryLockForAdmission(m))) return [];
    const active = await m.query<Array<{ source_host: string; target_host: string }>>(
      `SELECT source_host, target_host FROM ${MIGRATION} WHERE admitted_at IS NOT NULL AND released_at IS NULL`,
    );
    const limits = new AdmissionLimits(
      {
        maxActive: this.config.CCM_SAGA_MAX_ACTIVE,
        maxPerSource: this.config.CCM_SAGA_MAX_PER_SOURCE_HOST,
        maxPerTarget: this.config.CCM_SAGA_MAX_PER_TARGET_HOST,
      },
      active.map((a): Slot => ({ source: a.source_host, target: a.target_host })),
    );
    if (limits.full()) return [];
    const queue = await m.query<Array<RawRow & { waited_ms: string }>>(
      `SELECT ${rowColumns()}, GREATEST(0, EXTRACT(EPOCH FROM (clock_timestamp() - created_at)) * 1000) AS waited_ms
       FROM ${MIGRATION} WHERE admitted_at IS NULL AND ended_at IS NULL
       ORDER BY priority_rank DESC, seq LIMIT $1 FOR UPDATE SKIP LOCKED`,
      [QUEUE_SCAN_DEPTH, this.opts.instanceId],
    );
    const admitted: Applied[] = [];
    for (const raw of queue) {
      if (limits.full()) break;
      const row = toSagaRow(raw);
      if (!limits.take({ source: row.sourceHost, target: row.targetHost })) continue;
      await m.query(
        `UPDATE ${MIGRATION} SET admitted_at = now(), admitted_tick = nextval('${CLOCK}'),
           lease_owner = $2, lease_until = now() + $3 * interval '1 millisecond' WHERE id = $1`,
        [row.id, this.opts.instanceId, this.config.CCM_SAGA_LEASE_MS],
      );
      const waitedMs = Math.round(Number(raw.waited_ms));
      admitted.push(
        await this.store.applyLocked(
          m,
          { ...row, admitted: true, mine: true },
          [{ type: 'Started' }],
          [{ name: 'admitted', data: { waitedMs } }],
        ),
      );
    }
    if (admitted.length) this.log.debug(`admitted ${admitted.map((a) => a.row.id).join(', ')}`);
    return admitted;
  }
}
