import { Inject, Injectable, Logger } from '@nestjs/common';
import { type WorkloadKind } from '@ccm/contracts';
import { MESSAGING_OPTIONS, type MessagingOptions } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import {
  DEFAULT_CANCEL_REASON,
  IgnoreReason,
  type SagaDecision,
  type SagaFact,
  type SagaState,
} from '@ccm/saga';
import { type DataSource, type EntityManager } from 'typeorm';
import { lockForRelease } from '../admission/lock.js';
import { CLOCK, MIGRATION, STEP_ATTEMPT } from '../db/schema.js';
import { SagaCatalog } from './catalog.js';
import { MigrationEvents } from './events.js';
import { changedAttempts, eventsOf, wakeAt, type AttemptRow, type PendingEvent } from './projection.js';
import { notify } from './wakeups.js';

/** What the coordinator needs of a migration row to drive its saga. */
export interface SagaRow {
  readonly id: string;
  readonly saga: string;
  readonly kind: WorkloadKind;
  readonly workloadId: string;
  readonly sourceHost: string;
  readonly targetHost: string;
  readonly state: SagaState | null;
  readonly eventSeq: number;
  readonly admitted: boolean;
  /** This replica holds the saga's lease (it sends the commands and fires the timers). */
  readonly mine: boolean;
}

/** The result of applying facts to a saga under its row lock. */
export interface Applied {
  readonly row: SagaRow;
  /** The state now stored (the same object as `row.state` when nothing changed). */
  readonly state: SagaState;
  readonly decisions: readonly SagaDecision[];
  readonly changed: boolean;
}

/** Facts to apply, or a function that picks them from the locked state (e.g. its due timers). */
export type FactSource = readonly SagaFact[] | ((state: SagaState) => readonly SagaFact[]);

/** The columns of a {@link SagaRow}, of table alias `t`; `$2` must be this replica's instance id. */
export function rowColumns(t = ''): string {
  const p = t ? `${t}.` : '';
  return `${p}id, ${p}saga, ${p}kind, ${p}workload_id, ${p}source_host, ${p}target_host, ${p}state,
    ${p}event_seq, ${p}admitted_at IS NOT NULL AS admitted,
    (${p}lease_owner = $2 AND ${p}lease_until > now()) AS mine`;
}

export interface RawRow {
  id: string;
  saga: string;
  kind: WorkloadKind;
  workload_id: string;
  source_host: string;
  target_host: string;
  state: SagaState | null;
  event_seq: number;
  admitted: boolean;
  mine: boolean | null;
}

export function toSagaRow(r: RawRow): SagaRow {
  return {
    id: r.id,
    saga: r.saga,
    kind: r.kind,
    workloadId: r.workload_id,
    sourceHost: r.source_host,
    targetHost: r.target_host,
    state: r.state,
    eventSeq: r.event_seq,
    admitted: r.admitted,
    mine: r.mine === true,
  };
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/**
 * The only writer of saga state. Every change happens in one transaction holding the migration row
 * lock: load the state, apply facts with the engine, write the new state, its attempt rows and its
 * events (outbox), and wake the holder when this replica is not it. Replicas may apply facts to any
 * saga (a reply they received, a cancel they consumed); the row lock orders them and the engine
 * ignores facts that are stale by then.
 */
@Injectable()
export class SagaStore {
  private readonly log = new Logger('SagaStore');

  constructor(
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
    @Inject(MESSAGING_OPTIONS) private readonly opts: MessagingOptions,
    private readonly catalog: SagaCatalog,
    private readonly events: MigrationEvents,
  ) {}

  get instanceId(): string {
    return this.opts.instanceId;
  }

  /** Locks and reads one migration row in `manager`'s transaction. */
  async lock(manager: EntityManager, id: string): Promise<SagaRow | undefined> {
    const rows = await manager.query<RawRow[]>(
      `SELECT ${rowColumns()} FROM ${MIGRATION} WHERE id = $1 FOR UPDATE`,
      [id, this.instanceId],
    );
    return rows[0] ? toSagaRow(rows[0]) : undefined;
  }

  /** Applies facts to saga `id` in a transaction of its own; undefined when there is no such saga. */
  async apply(id: string, facts: FactSource): Promise<Applied | undefined> {
    return this.ds.transaction(async (m) => {
      const row = await this.lock(m, id);
      if (!row?.state) return undefined;
      return this.applyLocked(m, row, facts);
    });
  }

  /** Reads one migration row without locking it. */
  async load(id: string): Promise<SagaRow | undefined> {
    const rows = await this.ds.query<RawRow[]>(`SELECT ${rowColumns()} FROM ${MIGRATION} WHERE id = $1`, [
      id,
      this.instanceId,
    ]);
    return rows[0] ? toSagaRow(rows[0]) : undefined;
  }

  /**
   * Applies facts to a row already locked in `manager`'s transaction. `leading` events are published
   * before those of the transition (e.g. `admitted` before the first step starts).
   */
  async applyLocked(
    manager: EntityManager,
    row: SagaRow,
    facts: FactSource,
    leading: PendingEvent[] = [],
  ): Promise<Applied> {
    const machine = this.catalog.forSaga(row.saga);
    const before = row.state!;
    const now = Date.now();
    let state = before;
    const decisions: SagaDecision[] = [];
    for (const fact of typeof facts === 'function' ? facts(before) : facts) {
      const r = machine.advance(state, fact, now);
      if (
        fact.type === 'CancelRequested' &&
        (r.changed || r.ignored?.reason === IgnoreReason.AlreadyCancelling)
      ) {
        leading.push({ name: 'cancel-accepted', data: { reason: fact.reason ?? DEFAULT_CANCEL_REASON } });
      }
      if (r.ignored) this.log.debug(`${row.id}: ${fact.type} ignored: ${r.ignored.detail}`);
      decisions.push(...r.decisions);
      state = r.state;
    }
    const changed = state !== before;
    const events = [...leading, ...eventsOf(machine.definition, before, state, decisions)];
    if (!changed && events.length === 0) return { row, state, decisions, changed };
    const seq = await this.events.write(manager, row.id, row.eventSeq, events);
    if (changed) {
      await this.writeState(manager, row.id, state, seq, decisions);
      for (const a of changedAttempts(machine.definition, before, state)) {
        await this.writeAttempt(manager, row.id, a);
      }
      const finished = decisions.some((d) => d.type === 'Finished');
      if (finished && row.admitted) await notify(manager, { kind: 'admit' });
      if (!row.mine && !finished) await notify(manager, { kind: 'kick', id: row.id });
    } else {
      await manager.query(`UPDATE ${MIGRATION} SET event_seq = $2 WHERE id = $1`, [row.id, seq]);
    }
    return { row: { ...row, state, eventSeq: seq }, state, decisions, changed };
  }

  private async writeState(
    manager: EntityManager,
    id: string,
    state: SagaState,
    seq: number,
    decisions: readonly SagaDecision[],
  ): Promise<void> {
    const finished = decisions.some((d) => d.type === 'Finished');
    if (finished) await lockForRelease(manager);
    await manager.query(
      `UPDATE ${MIGRATION} SET state = $2, revision = $3, phase = $4, reason = $5, wake_at = $6,
         event_seq = $7, updated_at = now(),
         ended_at = CASE WHEN $8 THEN now() ELSE ended_at END,
         released_tick = CASE WHEN $8 AND admitted_at IS NOT NULL AND released_at IS NULL
           THEN nextval('${CLOCK}') ELSE released_tick END,
         released_at = CASE WHEN $8 AND admitted_at IS NOT NULL AND released_at IS NULL
           THEN now() ELSE released_at END,
         lease_owner = CASE WHEN $8 THEN NULL ELSE lease_owner END,
         lease_until = CASE WHEN $8 THEN NULL ELSE lease_until END
       WHERE id = $1`,
      [
        id,
        JSON.stringify(state),
        state.revision,
        state.phase,
        state.reason ?? null,
        wakeAt(state),
        seq,
        finished,
      ],
    );
  }

  private async writeAttempt(manager: EntityManager, id: string, a: AttemptRow): Promise<void> {
    const r = a.record;
    await manager.query(
      `INSERT INTO ${STEP_ATTEMPT} (migration_id, step, kind, attempt, step_index, participant, command,
         idempotency_key, status, sent_at, deadline_at, ended_at, duration_ms, effect, error, result)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
       ON CONFLICT (migration_id, step, kind, attempt) DO UPDATE SET status = EXCLUDED.status,
         ended_at = EXCLUDED.ended_at, duration_ms = EXCLUDED.duration_ms, effect = EXCLUDED.effect,
         error = EXCLUDED.error, result = EXCLUDED.result`,
      [
        id,
        a.step,
        a.kind,
        r.attempt,
        a.stepIndex,
        a.participant,
        a.command,
        r.idempotencyKey,
        r.status,
        iso(r.sentAt),
        iso(r.deadlineAt),
        iso(r.endedAt),
        r.endedAt === undefined ? null : Math.max(0, r.endedAt - r.sentAt),
        r.effect ?? null,
        r.error ? JSON.stringify(r.error) : null,
        r.result === undefined ? null : JSON.stringify(r.result),
      ],
    );
  }
}
