import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataPlaneProgressSchema, type DataPlaneProgress } from '@ccm/contracts';
import { OnJetStream, ack, term, type MessageContext, type Outcome } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { type DataSource } from 'typeorm';
import { MIGRATION } from '../db/schema.js';
import { MigrationEvents } from '../saga/events.js';

/**
 * Forwards data-plane progress to the migration's own event stream: container-checkpoint reports
 * pre-copy rounds on `ccm.evt.checkpoint.<id>.progressed`, host-agent reports VM convergence on
 * `ccm.evt.transfer.<id>.progressed`; each becomes `ccm.evt.migration.<id>.progressed` (through the
 * outbox, numbered with the migration's other events) and the migration's last known progress.
 * Reports for migrations that are unknown or have ended are dropped.
 */
@Injectable()
export class ProgressConsumers {
  private readonly log = new Logger('Progress');

  constructor(
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
    private readonly events: MigrationEvents,
  ) {}

  @OnJetStream({
    stream: 'events',
    durable: 'progress-checkpoint',
    filterSubject: 'ccm.evt.checkpoint.*.progressed',
    schema: DataPlaneProgressSchema,
    allow: ['container-checkpoint'],
    concurrency: 4,
  })
  checkpoint(p: DataPlaneProgress, ctx: MessageContext): Promise<Outcome> {
    return this.forward(p, ctx);
  }

  @OnJetStream({
    stream: 'events',
    durable: 'progress-transfer',
    filterSubject: 'ccm.evt.transfer.*.progressed',
    schema: DataPlaneProgressSchema,
    allow: ['host-agent'],
    concurrency: 4,
  })
  transfer(p: DataPlaneProgress, ctx: MessageContext): Promise<Outcome> {
    return this.forward(p, ctx);
  }

  private async forward(p: DataPlaneProgress, ctx: MessageContext): Promise<Outcome> {
    if (ctx.subject.split('.')[3] !== p.migrationId) {
      return term(`progress for ${p.migrationId} published on another migration's subject ${ctx.subject}`);
    }
    const { migrationId, ...progress } = p;
    await this.ds.transaction(async (m) => {
      const rows = await m.query<Array<{ event_seq: number }>>(
        `SELECT event_seq FROM ${MIGRATION} WHERE id = $1 AND ended_at IS NULL FOR UPDATE`,
        [migrationId],
      );
      if (!rows[0]) {
        this.log.debug(`dropped progress for ${migrationId}: unknown or ended`);
        return;
      }
      const seq = await this.events.write(
        m,
        migrationId,
        rows[0].event_seq,
        [{ name: 'progressed', data: { reporter: ctx.envelope.source, progress } }],
        ctx.envelope.id,
      );
      await m.query(`UPDATE ${MIGRATION} SET event_seq = $2, progress = $3 WHERE id = $1`, [
        migrationId,
        seq,
        JSON.stringify({ reporter: ctx.envelope.source, ...progress }),
      ]);
    });
    return ack();
  }
}
