import { Inject, Injectable, Logger } from '@nestjs/common';
import {
  CancelRequestSchema,
  CcmError,
  durableConsumer,
  ErrorCodes,
  MigrateRequestSchema,
  eventHash,
  OPERATOR,
  PRIORITY_RANK,
  subjects,
  migrationIdFor,
  type CancelRequest,
  type MigrateRequest,
} from '@ccm/contracts';
import { OnJetStream, ack, nak, term, type MessageContext, type Outcome } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { sagaId } from '@ccm/saga';
import { type DataSource, type EntityManager } from 'typeorm';
import { MIGRATION } from '../db/schema.js';
import { SagaCatalog } from '../saga/catalog.js';
import { MigrationEvents } from '../saga/events.js';
import { type PendingEvent } from '../saga/projection.js';
import { SagaRunner } from '../saga/runner.js';
import { notify } from '../saga/wakeups.js';

/** The operator's request envelope exactly as signed: the first link of the migration's hash chain. */
function signedRequest(raw: Uint8Array): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(raw)) as Record<string, unknown>;
}

/** Intake requests one replica handles at once. */
export const INTAKE_CONCURRENCY = 16;
/** Deliveries a cancel for a migration not (yet) known gets before it is dead-lettered. */
export const CANCEL_UNKNOWN_DELIVERIES = 3;
const CANCEL_UNKNOWN_RETRY_MS = 500;

/**
 * The coordinator's intake: durable JetStream consumers on `ccm.req.migrate` and `ccm.req.cancel`
 * (stream CCM_REQUESTS), shared by every replica. Only operator-signed, schema-valid requests reach
 * these methods; the consumer dead-letters the rest with the typed reason. A migrate request becomes
 * a `Pending` migration that admission starts later; its id derives from the idempotency key, so a
 * repeated key (also concurrently) keeps the one migration it already made.
 */
@Injectable()
export class IntakeConsumers {
  private readonly log = new Logger('Intake');

  constructor(
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
    private readonly catalog: SagaCatalog,
    private readonly events: MigrationEvents,
    private readonly runner: SagaRunner,
  ) {}

  @OnJetStream({
    ...durableConsumer('saga-coordinator', 'migrate-intake'),
    types: [subjects.req('migrate')],
    schema: MigrateRequestSchema,
    allow: [OPERATOR],
    concurrency: INTAKE_CONCURRENCY,
  })
  async migrate(req: MigrateRequest, ctx: MessageContext): Promise<Outcome> {
    const key = ctx.envelope.idempotencykey ?? ctx.envelope.id;
    const id = migrationIdFor(key);
    const machine = this.catalog.forKind(req.kind);
    const state = machine.create(id, Date.now());
    await this.ds.transaction(async (m) => {
      const values = [
        id,
        key,
        sagaId(machine.definition),
        req.kind,
        req.workload,
        req.sourceHost,
        req.targetHost,
        req.priority,
        PRIORITY_RANK[req.priority],
        JSON.stringify(req),
        ctx.envelope.source,
      ];
      const inserted = await m.query<unknown[]>(
        `INSERT INTO ${MIGRATION} (id, idempotency_key, saga, kind, workload_id, source_host, target_host,
           priority, priority_rank, request, requested_by, phase, state, revision)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0)
         ON CONFLICT DO NOTHING RETURNING id`,
        [...values, state.phase, JSON.stringify(state)],
      );
      const requested = this.requestedEvent(req, ctx);
      if (inserted.length) {
        await this.writeEvents(m, id, [requested], ctx.envelope.id);
        await notify(m, { kind: 'admit' });
        return;
      }
      const existing = await m.query<Array<{ id: string }>>(`SELECT id FROM ${MIGRATION} WHERE id = $1`, [
        id,
      ]);
      if (existing.length) {
        this.log.log(`duplicate migrate request ${ctx.envelope.id}: migration ${id} already exists`);
        return;
      }
      await this.reject(m, id, values, req, requested, ctx);
    });
    return ack();
  }

  /** The workload has an active migration: record the request as `Rejected` (final) and say why. */
  private async reject(
    m: EntityManager,
    id: string,
    values: unknown[],
    req: MigrateRequest,
    requested: PendingEvent,
    ctx: MessageContext,
  ): Promise<void> {
    const busy = await m.query<Array<{ id: string }>>(
      `SELECT id FROM ${MIGRATION} WHERE kind = $1 AND workload_id = $2 AND ended_at IS NULL`,
      [req.kind, req.workload],
    );
    if (!busy[0]) {
      // It ended between our insert and this look: deliver again and insert then.
      throw new CcmError(ErrorCodes.Conflict, `workload ${req.workload} changed while admitting`, {
        retryable: true,
      });
    }
    const reason = `${req.kind} ${req.workload} already has an active migration ${busy[0].id}`;
    await m.query(
      `INSERT INTO ${MIGRATION} (id, idempotency_key, saga, kind, workload_id, source_host, target_host,
         priority, priority_rank, request, requested_by, phase, reason, ended_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'Rejected', $12, now())`,
      [...values, reason],
    );
    await this.writeEvents(
      m,
      id,
      [requested, { name: 'rejected', data: { code: ErrorCodes.Conflict, message: reason } }],
      ctx.envelope.id,
    );
    this.log.warn(`rejected migration ${id}: ${reason}`);
  }

  private requestedEvent(req: MigrateRequest, ctx: MessageContext): PendingEvent {
    return {
      name: 'requested',
      data: {
        workload: req.workload,
        kind: req.kind,
        sourceHost: req.sourceHost,
        targetHost: req.targetHost,
        priority: req.priority,
        requestedBy: ctx.envelope.source,
        ...(ctx.raw ? { request: signedRequest(ctx.raw) } : {}),
      },
    };
  }

  private async writeEvents(
    m: EntityManager,
    id: string,
    events: PendingEvent[],
    cause: string,
  ): Promise<void> {
    const request = events[0]?.data['request'];
    const genesis = request ? eventHash(request) : undefined;
    const seq = await this.events.write(m, id, 0, events, cause, genesis);
    await m.query(`UPDATE ${MIGRATION} SET event_seq = $2 WHERE id = $1`, [id, seq]);
  }

  @OnJetStream({
    ...durableConsumer('saga-coordinator', 'cancel-intake'),
    types: [subjects.req('cancel')],
    schema: CancelRequestSchema,
    allow: [OPERATOR],
    concurrency: INTAKE_CONCURRENCY,
  })
  async cancel(req: CancelRequest, ctx: MessageContext): Promise<Outcome> {
    const reason = req.reason ?? `cancel requested by ${ctx.envelope.source}`;
    const applied = await this.runner.apply(req.migrationId, [{ type: 'CancelRequested', reason }]);
    if (applied) return ack();
    if (await this.refuseEnded(req.migrationId)) return ack();
    // The migrate request may still be on its way through the other consumer: give it a moment.
    if ((ctx.deliveryCount ?? 1) < CANCEL_UNKNOWN_DELIVERIES) return nak(CANCEL_UNKNOWN_RETRY_MS);
    return term(`${ErrorCodes.NotFound}: no migration ${req.migrationId}`);
  }

  /** A cancel for a request rejected at intake (no saga): refuse it as finished. */
  private async refuseEnded(id: string): Promise<boolean> {
    return this.ds.transaction(async (m) => {
      const rows = await m.query<Array<{ event_seq: number; phase: string }>>(
        `SELECT event_seq, phase FROM ${MIGRATION} WHERE id = $1 FOR UPDATE`,
        [id],
      );
      const row = rows[0];
      if (!row) return false;
      const message = `migration ${id} already ended ${row.phase}`;
      const seq = await this.events.write(m, id, row.event_seq, [
        { name: 'cancel-refused', data: { reason: 'AlreadyFinished', message } },
      ]);
      await m.query(`UPDATE ${MIGRATION} SET event_seq = $2 WHERE id = $1`, [id, seq]);
      return true;
    });
  }
}
