import { schemaFor } from '@ccm/contracts';
import { type MigrationInterface, type QueryRunner } from 'typeorm';

/** container-checkpoint's Postgres schema. */
export const CHECKPOINT_SCHEMA = schemaFor('container-checkpoint');
const s = `"${CHECKPOINT_SCHEMA}"`;

/**
 * - `checkpoint`: one row per migration: which container moves from which guest to which, when the
 *   source froze and the target resumed. Its row lock makes one step of a migration run at a time.
 * - `image_round`: every image round sent (pre-dumps, then the final dump) with its figures, written as
 *   it completes so a retried pre-copy goes on from the next round.
 * - `step_result`: the reply of every step action or compensation that succeeded, once per
 *   (migration, step, kind): a retry under a new attempt number gets it without acting again.
 * - `freeze`: when the source first froze for a migration, written before the dump is sent and kept
 *   when that step fails and is retried (apart from `checkpoint`, whose row the step holds locked).
 */
export class CheckpointTables1796300000000 implements MigrationInterface {
  name = 'CheckpointTables1796300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE ${s}.checkpoint (
      migration_id text PRIMARY KEY,
      container_id text NOT NULL,
      source_vm text NOT NULL,
      target_vm text NOT NULL,
      final_round integer NULL,
      resumed_at timestamptz NULL,
      frozen_ms double precision NULL,
      created_at timestamptz NOT NULL DEFAULT now())`);
    await q.query(`CREATE TABLE ${s}.image_round (
      migration_id text NOT NULL,
      round integer NOT NULL CHECK (round >= 1),
      kind text NOT NULL CHECK (kind IN ('pre-dump', 'dump')),
      pages integer NOT NULL,
      image_bytes bigint NOT NULL,
      chunks integer NOT NULL,
      duration_ms double precision NOT NULL,
      dirty_pages integer NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (migration_id, round))`);
    await q.query(`CREATE TABLE ${s}.freeze (
      migration_id text PRIMARY KEY,
      frozen_at timestamptz NOT NULL)`);
    await q.query(`CREATE TABLE ${s}.step_result (
      migration_id text NOT NULL,
      step text NOT NULL,
      kind text NOT NULL CHECK (kind IN ('action', 'compensation')),
      result jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (migration_id, step, kind))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE ${s}.step_result`);
    await q.query(`DROP TABLE ${s}.freeze`);
    await q.query(`DROP TABLE ${s}.image_round`);
    await q.query(`DROP TABLE ${s}.checkpoint`);
  }
}
