import { Injectable } from '@nestjs/common';
import {
  migrationEventSubject,
  migrationEventType,
  type ChainLink,
  type MigrationEventName,
} from '@ccm/contracts';
import { OutboxService } from '@ccm/messaging';
import { type EntityManager } from 'typeorm';
import { MIGRATION } from '../db/schema.js';
import { type PendingEvent } from './projection.js';
import { uuidv7 } from './uuid7.js';

/**
 * The events that carry cross-links: the heads of the participants' hash chains the coordinator had
 * seen when it wrote them (a settled step, forwarded progress, the end).
 */
const LINKED: ReadonlySet<MigrationEventName> = new Set<MigrationEventName>([
  'step-succeeded',
  'step-failed',
  'step-timed-out',
  'compensation-succeeded',
  'compensation-failed',
  'compensation-timed-out',
  'progressed',
  'finished',
]);

/**
 * Writes migration events through the outbox, in the caller's transaction, numbering them with the
 * migration's `event_seq` (the caller stores the returned last seq on the row in the same transaction).
 * The outbox appends them to the coordinator's hash chain for the migration; `genesis` (the request's
 * hash) starts that chain when these are its first events.
 */
@Injectable()
export class MigrationEvents {
  constructor(private readonly outbox: OutboxService) {}

  /** Enqueues `events` for migration `id` after `lastSeq`; returns the new last seq. */
  async write(
    manager: EntityManager,
    id: string,
    lastSeq: number,
    events: readonly PendingEvent[],
    causationId?: string,
    genesis?: string,
  ): Promise<number> {
    let seq = lastSeq;
    const at = new Date().toISOString();
    const links = events.some((e) => LINKED.has(e.name)) ? await this.observed(manager, id) : undefined;
    for (const e of events) {
      seq += 1;
      await this.outbox.enqueue(manager, migrationEventSubject(id, e.name), {
        id: uuidv7(),
        type: migrationEventType(e.name),
        subject: id,
        correlationid: id,
        ...(causationId ? { causationid: causationId } : {}),
        ...(genesis ? { chainGenesis: genesis } : {}),
        ...(links && LINKED.has(e.name) ? { chainLinks: links } : {}),
        data: { migrationId: id, seq, at, ...e.data },
      });
    }
    return seq;
  }

  private async observed(manager: EntityManager, id: string): Promise<Record<string, ChainLink>> {
    const rows = await manager.query<Array<{ observed_chains: Record<string, ChainLink> | null }>>(
      `SELECT observed_chains FROM ${MIGRATION} WHERE id = $1`,
      [id],
    );
    return rows[0]?.observed_chains ?? {};
  }
}
