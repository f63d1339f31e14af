import { type MigrationInterface, type QueryRunner } from 'typeorm';
import { KEY_BROKER_SCHEMA } from './migrations.js';

const s = `"${KEY_BROKER_SCHEMA}"`;

/**
 * - `rotation`: what `rotate-keys` revoked after a migration passed its point of no return, one row
 *   per migration (a repeat answers from it);
 * - `launch_session` gains the `revoked` state: the source placement's secrets are scrubbed and no
 *   launch secret is released for it again.
 */
export class KeyBrokerRotation1796200000000 implements MigrationInterface {
  name = 'KeyBrokerRotation1796200000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE ${s}.rotation (
      migration_id text PRIMARY KEY,
      workload_id text NOT NULL,
      source_host text NOT NULL,
      target_host text NOT NULL,
      result jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now())`);
    await q.query(`ALTER TABLE ${s}.launch_session DROP CONSTRAINT launch_session_state_check`);
    await q.query(`ALTER TABLE ${s}.launch_session ADD CONSTRAINT launch_session_state_check
      CHECK (state IN ('started', 'secret-released', 'revoked'))`);
    await q.query(`ALTER TABLE ${s}.launch_session ADD COLUMN revoked_at timestamptz NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${s}.launch_session DROP COLUMN revoked_at`);
    await q.query(`ALTER TABLE ${s}.launch_session DROP CONSTRAINT launch_session_state_check`);
    await q.query(`ALTER TABLE ${s}.launch_session ADD CONSTRAINT launch_session_state_check
      CHECK (state IN ('started', 'secret-released'))`);
    await q.query(`DROP TABLE ${s}.rotation`);
  }
}
