import { Inject, Injectable } from '@nestjs/common';
import {
  ListMigrationsRequestSchema,
  type ListMigrationsRequest,
  type MigrationDetail,
  type MigrationPage,
  type MigrationSummary,
  type StepView,
} from '@ccm/contracts';
import { DATA_SOURCE } from '@ccm/persistence';
import { CONTAINER_MIGRATION, VM_MIGRATION, movedPointOfNoReturn, sagaId, type SagaState } from '@ccm/saga';
import { type DataSource } from 'typeorm';
import { MIGRATION, STEP_ATTEMPT } from '../db/schema.js';
import { figuresOf } from '../saga/figures.js';

interface SummaryRow {
  id: string;
  seq: string;
  saga: string;
  kind: MigrationSummary['kind'];
  workload_id: string;
  source_host: string;
  target_host: string;
  priority: MigrationSummary['priority'];
  phase: MigrationSummary['phase'];
  reason: string | null;
  requested_by: string;
  cursor_step: string | null;
  created_at: Date;
  admitted_at: Date | null;
  ended_at: Date | null;
  updated_at: Date;
}

interface AttemptRow {
  step: string;
  kind: 'action' | 'compensation';
  attempt: number;
  participant: string;
  command: string;
  idempotency_key: string;
  status: StepView['attempts'][number]['status'];
  sent_at: Date;
  deadline_at: Date;
  ended_at: Date | null;
  duration_ms: number | null;
  error: { code: string; message: string; details?: Record<string, unknown> } | null;
}

const ACTIVE = new Set(['Running', 'Compensating', 'Cancelling']);
const SUMMARY = `id, seq, saga, kind, workload_id, source_host, target_host, priority, phase, reason,
  requested_by, created_at, admitted_at, ended_at, updated_at,
  CASE WHEN phase IN (${[...ACTIVE].map((p) => `'${p}'`).join(', ')})
    THEN state->'steps'->((state->>'cursor')::int)->>'name' END AS cursor_step`;

function summary(r: SummaryRow): MigrationSummary {
  return {
    id: r.id,
    saga: r.saga,
    kind: r.kind,
    workload: r.workload_id,
    sourceHost: r.source_host,
    targetHost: r.target_host,
    priority: r.priority,
    phase: r.phase,
    ...(r.reason ? { reason: r.reason } : {}),
    requestedBy: r.requested_by,
    ...(r.cursor_step ? { currentStep: r.cursor_step } : {}),
    createdAt: r.created_at.toISOString(),
    ...(r.admitted_at ? { admittedAt: r.admitted_at.toISOString() } : {}),
    ...(r.ended_at ? { endedAt: r.ended_at.toISOString() } : {}),
    updatedAt: r.updated_at.toISOString(),
  };
}

/** Read side of the coordinator: one migration with its history, or a filtered page of them. */
@Injectable()
export class MigrationQueries {
  constructor(@Inject(DATA_SOURCE) private readonly ds: DataSource) {}

  async get(id: string): Promise<MigrationDetail | undefined> {
    const rows = await this.ds.query<
      Array<
        SummaryRow & {
          idempotency_key: string;
          state: SagaState | null;
          progress: Record<string, unknown> | null;
          event_seq: number;
        }
      >
    >(`SELECT ${SUMMARY}, idempotency_key, state, progress, event_seq FROM ${MIGRATION} WHERE id = $1`, [id]);
    const r = rows[0];
    if (!r) return undefined;
    const attempts = await this.ds.query<AttemptRow[]>(
      `SELECT step, kind, attempt, participant, command, idempotency_key, status, sent_at, deadline_at,
         ended_at, duration_ms, error FROM ${STEP_ATTEMPT} WHERE migration_id = $1
       ORDER BY step_index, sent_at, kind, attempt`,
      [id],
    );
    const steps: StepView[] = (r.state?.steps ?? []).map((s) => ({
      name: s.name,
      status: s.status,
      attempts: attempts.filter((a) => a.step === s.name).map(attemptView),
    }));
    const history = r.state?.phaseHistory.map((h) => ({
      phase: h.phase,
      at: new Date(h.at).toISOString(),
      ...(h.reason ? { reason: h.reason } : {}),
    })) ?? [{ phase: r.phase, at: r.created_at.toISOString(), ...(r.reason ? { reason: r.reason } : {}) }];
    const figures = r.state ? figuresOf(r.state) : undefined;
    const def = [VM_MIGRATION, CONTAINER_MIGRATION].find((d) => sagaId(d) === r.state?.saga);
    const moved = def && r.state ? movedPointOfNoReturn(def, r.state) : undefined;
    return {
      ...summary(r),
      idempotencyKey: r.idempotency_key,
      phaseHistory: history,
      steps,
      ...(moved ? { pointOfNoReturn: { step: def!.steps[moved.index].name, reason: moved.reason } } : {}),
      ...(r.progress && ACTIVE.has(r.phase) ? { progress: r.progress } : {}),
      eventSeq: r.event_seq,
      ...(figures ? { figures } : {}),
    };
  }

  /** Newest first, filtered by phase and host (source or target), `limit` per page. */
  async list(input: ListMigrationsRequest): Promise<MigrationPage> {
    const q = ListMigrationsRequestSchema.parse(input);
    const before = q.cursor ? q.cursor.slice(1) : null;
    const rows = await this.ds.query<SummaryRow[]>(
      `SELECT ${SUMMARY} FROM ${MIGRATION}
       WHERE ($1::text IS NULL OR phase = $1) AND ($2::text IS NULL OR source_host = $2 OR target_host = $2)
         AND ($3::bigint IS NULL OR seq < $3)
       ORDER BY seq DESC LIMIT $4`,
      [q.phase ?? null, q.host ?? null, before, q.limit + 1],
    );
    const page = rows.slice(0, q.limit);
    const more = rows.length > q.limit;
    return {
      items: page.map(summary),
      ...(more ? { nextCursor: `c${page[page.length - 1].seq}` } : {}),
    };
  }
}

function attemptView(a: AttemptRow): StepView['attempts'][number] {
  return {
    kind: a.kind,
    attempt: a.attempt,
    status: a.status,
    participant: a.participant,
    command: a.command,
    idempotencyKey: a.idempotency_key,
    sentAt: a.sent_at.toISOString(),
    deadlineAt: a.deadline_at.toISOString(),
    ...(a.ended_at ? { endedAt: a.ended_at.toISOString() } : {}),
    ...(a.duration_ms === null ? {} : { durationMs: a.duration_ms }),
    ...(a.error ? { error: a.error } : {}),
  };
}
