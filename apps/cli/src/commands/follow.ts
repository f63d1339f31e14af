import {
  MIGRATION_EVENTS,
  migrationEventName,
  STREAMS,
  type MigrationEventData,
  type MigrationEventName,
} from '@ccm/contracts';
import { openEnvelope } from '@ccm/messaging';
import { DeliverPolicy, jetstream, type ConsumerMessages } from '@nats-io/jetstream';
import { type Connection } from '../context.js';
import { CliError, ExitCode } from '../errors.js';

/** How long a missing event may hold back later ones before the follower moves past it. */
export const GAP_WAIT_MS = 2_000;

/** A migration event as the follower hands it out. */
export type FollowedEvent = {
  [N in MigrationEventName]: { name: N; data: MigrationEventData<N> };
}[MigrationEventName];

/** How a followed migration ended, or why following stopped. */
export interface FollowEnd {
  readonly phase: string;
  readonly reason: string;
  /** Following stopped at a refused cancel: the migration itself goes on. */
  readonly cancelRefused?: boolean;
}

/**
 * Follows one migration's events (`ccm.evt.migration.<id>.>`), verified as signed by the
 * saga-coordinator, in `seq` order. It reads them from the CCM_EVENTS stream from the migration's first
 * event on (an ordered consumer), so it shows the whole story however late it attaches: before the
 * request is published, while the migration runs, or after a lost connection. `afterSeq` skips what was
 * already shown.
 */
export class Follower {
  constructor(
    private readonly conn: Connection,
    readonly migrationId: string,
  ) {}

  /** Hands each event to `on` until the migration ends (or, with `stopOnCancelRefused`, a cancel is refused). */
  async run(
    on: (e: FollowedEvent) => void,
    opts: { afterSeq?: number; stopOnCancelRefused?: boolean } = {},
  ): Promise<FollowEnd> {
    const pending = new Map<number, FollowedEvent>();
    let next = (opts.afterSeq ?? 0) + 1;
    let gapSince: number | undefined;
    const messages = await this.open();
    try {
      for await (const m of messages) {
        const name = migrationEventName(m.subject);
        if (!name) continue;
        let data: { seq: number };
        try {
          // Events stored before envelopes named their subject (version 1) still verify here; newer
          // ones must have been signed for the subject they are stored under.
          const env = openEnvelope(m.data, this.conn.trust, MIGRATION_EVENTS[name], {
            subject: m.subject,
            acceptV1: true,
          });
          if (env.source !== 'saga-coordinator') continue;
          data = env.data;
        } catch {
          continue;
        }
        if (data.seq < next) continue;
        pending.set(data.seq, { name, data } as FollowedEvent);
        if (!pending.has(next)) {
          gapSince ??= Date.now();
          if (Date.now() - gapSince < GAP_WAIT_MS) continue;
          next = Math.min(...pending.keys());
        }
        gapSince = undefined;
        for (let e = pending.get(next); e; e = pending.get(next)) {
          pending.delete(next);
          next += 1;
          on(e);
          const end = endOf(e, opts.stopOnCancelRefused ?? false);
          if (end) return end;
        }
      }
      return { phase: 'Unknown', reason: 'the event stream closed' };
    } finally {
      void messages.close().catch(() => undefined);
    }
  }

  private async open(): Promise<ConsumerMessages> {
    const subject = `ccm.evt.migration.${this.migrationId}.>`;
    try {
      const consumer = await jetstream(this.conn.nc).consumers.get(STREAMS.events.name, {
        filter_subjects: subject,
        deliver_policy: DeliverPolicy.All,
      });
      return await consumer.consume();
    } catch (err) {
      throw new CliError(
        ExitCode.Unavailable,
        'EVENTS_UNAVAILABLE',
        `cannot read the events of ${this.migrationId} from ${STREAMS.events.name}: ${(err as Error).message}`,
        'is the stack running, and may this key read CCM_EVENTS? `ccm migration <id>` shows the state',
      );
    }
  }
}

function endOf(e: FollowedEvent, stopOnCancelRefused: boolean): FollowEnd | undefined {
  if (e.name === 'finished') return { phase: e.data.phase, reason: e.data.reason };
  if (e.name === 'rejected') return { phase: 'Rejected', reason: e.data.message };
  if (e.name === 'cancel-refused' && stopOnCancelRefused) {
    return { phase: 'Running', reason: e.data.message, cancelRefused: true };
  }
  return undefined;
}
