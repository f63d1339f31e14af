import { type MigrationInterface, type QueryRunner } from 'typeorm';
import { CLOCK, MIGRATION, STEP_ATTEMPT } from './schema.js';

/**
 * The saga tables.
 * - `migration`: the request, the saga state (JSON, `revision` counts applied facts), the admission
 *   ticks, and the lease (`lease_owner` until `lease_until`) of the replica driving it. `wake_at` is
 *   the earliest armed timer (epoch ms) so the lease holder finds due timers with an index.
 *   `ended_at IS NULL` means active: at most one active migration per workload (unique index).
 * - `step_attempt`: one row per attempt of a step's action or compensation, with its idempotency key,
 *   outcome, duration, error and reply.
 */
export class SagaTables1764100000000 implements MigrationInterface {
  name = 'SagaTables1764100000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE SEQUENCE ${CLOCK}`);
    await q.query(`CREATE TABLE ${MIGRATION} (
      id text PRIMARY KEY,
      idempotency_key text NOT NULL UNIQUE,
      seq bigint NOT NULL UNIQUE DEFAULT nextval('${CLOCK}'),
      saga text NOT NULL,
      kind text NOT NULL,
      workload_id text NOT NULL,
      source_host text NOT NULL,
      target_host text NOT NULL,
      priority text NOT NULL,
      priority_rank smallint NOT NULL,
      request jsonb NOT NULL,
      requested_by text NOT NULL,
      phase text NOT NULL,
      reason text NULL,
      state jsonb NULL,
      revision integer NOT NULL DEFAULT 0,
      event_seq integer NOT NULL DEFAULT 0,
      wake_at bigint NULL,
      progress jsonb NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      admitted_at timestamptz NULL,
      admitted_tick bigint NULL,
      released_at timestamptz NULL,
      released_tick bigint NULL,
      ended_at timestamptz NULL,
      lease_owner text NULL,
      lease_until timestamptz NULL)`);
    await q.query(
      `CREATE UNIQUE INDEX migration_one_active_per_workload ON ${MIGRATION} (kind, workload_id) WHERE ended_at IS NULL`,
    );
    await q.query(
      `CREATE INDEX migration_queue ON ${MIGRATION} (priority_rank DESC, seq) WHERE admitted_at IS NULL AND ended_at IS NULL`,
    );
    await q.query(
      `CREATE INDEX migration_active ON ${MIGRATION} (source_host, target_host) WHERE admitted_at IS NOT NULL AND released_at IS NULL`,
    );
    await q.query(
      `CREATE INDEX migration_leases ON ${MIGRATION} (lease_owner, wake_at) WHERE ended_at IS NULL AND admitted_at IS NOT NULL`,
    );
    await q.query(`CREATE INDEX migration_by_phase ON ${MIGRATION} (phase, seq)`);
    await q.query(`CREATE INDEX migration_by_source ON ${MIGRATION} (source_host, seq)`);
    await q.query(`CREATE INDEX migration_by_target ON ${MIGRATION} (target_host, seq)`);
    await q.query(`CREATE TABLE ${STEP_ATTEMPT} (
      migration_id text NOT NULL REFERENCES ${MIGRATION} (id),
      step text NOT NULL,
      kind text NOT NULL CHECK (kind IN ('action', 'compensation')),
      attempt integer NOT NULL,
      step_index integer NOT NULL,
      participant text NOT NULL,
      command text NOT NULL,
      idempotency_key text NOT NULL UNIQUE,
      status text NOT NULL,
      sent_at timestamptz NOT NULL,
      deadline_at timestamptz NOT NULL,
      ended_at timestamptz NULL,
      duration_ms integer NULL,
      effect text NULL,
      error jsonb NULL,
      result jsonb NULL,
      PRIMARY KEY (migration_id, step, kind, attempt))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE ${STEP_ATTEMPT}`);
    await q.query(`DROP TABLE ${MIGRATION}`);
    await q.query(`DROP SEQUENCE ${CLOCK}`);
  }
}
