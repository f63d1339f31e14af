import { Injectable } from '@nestjs/common';
import { migrationEventSubject, migrationEventType } from '@ccm/contracts';
import { OutboxService } from '@ccm/messaging';
import { type EntityManager } from 'typeorm';
import { type PendingEvent } from './projection.js';
import { uuidv7 } from './uuid7.js';

/**
 * Writes migration events through the outbox, in the caller's transaction, numbering them with the
 * migration's `event_seq` (the caller stores the returned last seq on the row in the same transaction).
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
  ): Promise<number> {
    let seq = lastSeq;
    const at = new Date().toISOString();
    for (const e of events) {
      seq += 1;
      await this.outbox.enqueue(manager, migrationEventSubject(id, e.name), {
        id: uuidv7(),
        type: migrationEventType(e.name),
        subject: id,
        correlationid: id,
        ...(causationId ? { causationid: causationId } : {}),
        data: { migrationId: id, seq, at, ...e.data },
      });
    }
    return seq;
  }
}
