import { Injectable } from '@nestjs/common';
import {
  OVERLAY_EVENTS,
  overlayEventSubject,
  overlayEventType,
  type OverlayEventData,
  type OverlayEventName,
} from '@ccm/contracts';
import { OutboxService } from '@ccm/messaging';
import { type EntityManager } from 'typeorm';

/** What caused an overlay change: the command's envelope, and its migration when a saga step sent it. */
export interface EventCause {
  readonly causationId: string;
  readonly migrationId?: string;
}

/**
 * Writes the overlay's signed events (OVERLAY_EVENTS) through the outbox in the caller's transaction:
 * an event exists exactly when its change committed. An event about a migration carries its id as
 * `correlationid`, so it joins the migration's hash chain.
 */
@Injectable()
export class OverlayEvents {
  constructor(private readonly outbox: OutboxService) {}

  async record<N extends OverlayEventName>(
    m: EntityManager,
    name: N,
    data: Omit<OverlayEventData<N>, 'at' | 'migrationId'>,
    cause: EventCause,
  ): Promise<void> {
    const full = OVERLAY_EVENTS[name].parse({
      ...data,
      at: new Date().toISOString(),
      ...(cause.migrationId ? { migrationId: cause.migrationId } : {}),
    });
    await this.outbox.enqueue(m, overlayEventSubject(data.overlayId, name), {
      type: overlayEventType(name),
      data: full,
      causationid: cause.causationId,
      ...(cause.migrationId ? { correlationid: cause.migrationId } : {}),
    });
  }
}
