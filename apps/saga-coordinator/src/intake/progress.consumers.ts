import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataPlaneProgressSchema, durableConsumer, ErrorCodes, type DataPlaneProgress } from '@ccm/contracts';
import {
  MESSAGING_OPTIONS,
  OnJetStream,
  ack,
  term,
  type MessageContext,
  type MessagingOptions,
  type Outcome,
} from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { type DataSource } from 'typeorm';
import { MIGRATION } from '../db/schema.js';
import { MigrationEvents } from '../saga/events.js';

/**
 * Forwards data-plane progress to the migration's own event stream: container-checkpoint reports
 * pre-copy rounds on `ccm.evt.checkpoint.<id>.progressed`, host-agent reports VM convergence on
 * `ccm.evt.transfer.<id>.progressed`; each becomes `ccm.evt.migration.<id>.progressed` (through the
 * outbox, numbered with the migration's other events) and the migration's last known progress.
 * Reports for migrations that are unknown or have ended are dropped, and so is a report older (by its
 * stream sequence) than the one the migration's progress already comes from: one replica handles
 * reports one at a time in stream order, and this keeps progress from going back when replicas share
 * the work or a report is redelivered. A host-agent's report is taken only from the migration's source
 * or target host (the signing key's host scope in `trust.json`); any other is parked, unstored.
 */
@Injectable()
export class ProgressConsumers {
  private readonly log = new Logger('Progress');

  constructor(
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
    private readonly events: MigrationEvents,
    @Inject(MESSAGING_OPTIONS) private readonly messaging: MessagingOptions,
  ) {}

  @OnJetStream({
    ...durableConsumer('saga-coordinator', 'progress-checkpoint'),
    schema: DataPlaneProgressSchema,
    allow: ['container-checkpoint'],
  })
  checkpoint(p: DataPlaneProgress, ctx: MessageContext): Promise<Outcome> {
    return this.forward(p, ctx);
  }

  @OnJetStream({
    ...durableConsumer('saga-coordinator', 'progress-transfer'),
    schema: DataPlaneProgressSchema,
    allow: ['host-agent'],
  })
  transfer(p: DataPlaneProgress, ctx: MessageContext): Promise<Outcome> {
    const key = ctx.envelope.signerkey;
    const host = key ? this.messaging.trust.lookup(key)?.scope : undefined;
    return this.forward(p, ctx, { host: host ?? null });
  }

  /** `reporter.host`: a host-agent report, from the host its key is pinned to (`null`: none). */
  private async forward(
    p: DataPlaneProgress,
    ctx: MessageContext,
    reporter?: { host: string | null },
  ): Promise<Outcome> {
    if (ctx.subject.split('.')[3] !== p.migrationId) {
      return term(
        `${ErrorCodes.Misaddressed}: progress for ${p.migrationId} published on another migration's subject ${ctx.subject}`,
      );
    }
    const { migrationId, ...progress } = p;
    const streamSeq = ctx.streamSeq ?? null;
    return this.ds.transaction(async (m) => {
      const rows = await m.query<
        Array<{ event_seq: number; progress_seq: string | null; source_host: string; target_host: string }>
      >(
        `SELECT event_seq, progress_seq, source_host, target_host FROM ${MIGRATION}
          WHERE id = $1 AND ended_at IS NULL FOR UPDATE`,
        [migrationId],
      );
      const row = rows[0];
      if (!row) {
        this.log.debug(`dropped progress for ${migrationId}: unknown or ended`);
        return ack();
      }
      if (reporter && (!reporter.host || ![row.source_host, row.target_host].includes(reporter.host))) {
        return term(
          `${ErrorCodes.Unauthorized}: transfer progress for ${migrationId} (${row.source_host} -> ` +
            `${row.target_host}) signed by a host-agent of ${reporter.host ?? 'no pinned host'}`,
        );
      }
      if (streamSeq !== null && row.progress_seq !== null && Number(row.progress_seq) >= streamSeq) {
        this.log.debug(`dropped progress #${streamSeq} for ${migrationId}: #${row.progress_seq} is newer`);
        return ack();
      }
      const seq = await this.events.write(
        m,
        migrationId,
        row.event_seq,
        [{ name: 'progressed', data: { reporter: ctx.envelope.source, progress } }],
        ctx.envelope.id,
      );
      await m.query(
        `UPDATE ${MIGRATION} SET event_seq = $2, progress = $3, progress_seq = COALESCE($4, progress_seq) WHERE id = $1`,
        [migrationId, seq, JSON.stringify({ reporter: ctx.envelope.source, ...progress }), streamSeq],
      );
      return ack();
    });
  }
}
