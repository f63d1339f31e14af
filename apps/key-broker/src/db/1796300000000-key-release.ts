import { type MigrationInterface, type QueryRunner } from 'typeorm';
import { KEY_BROKER_SCHEMA } from './migrations.js';

const s = `"${KEY_BROKER_SCHEMA}"`;

/**
 * The two-sided migration key release:
 * - `nonce`: every nonce handed out (32 bytes, hex), whom it was for, the migration it binds, when it
 *   expires and when it was used (single use: `used_at` is set once, in its own transaction);
 * - `key_release`: one granted release per migration (ids and digests only; the key itself is never
 *   stored), and whether it was revoked since;
 * - `release_log`: every decision, granted or refused, as a signed record chained by hash (seq 1, 2…);
 * - `revoked_guest`: guests whose evidence is refused from now on.
 */
export class KeyBrokerRelease1796300000000 implements MigrationInterface {
  name = 'KeyBrokerRelease1796300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE ${s}.nonce (
      nonce text PRIMARY KEY CHECK (nonce ~ '^[0-9a-f]{64}$'),
      audience text NOT NULL,
      migration_id text NULL,
      issued_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL,
      used_at timestamptz NULL)`);
    await q.query(`CREATE INDEX nonce_expires_at ON ${s}.nonce (expires_at)`);
    await q.query(`CREATE TABLE ${s}.key_release (
      migration_id text PRIMARY KEY,
      key_id text NOT NULL UNIQUE,
      workload_id text NOT NULL,
      source_vm text NOT NULL,
      target_vm text NOT NULL,
      decision_seq integer NOT NULL,
      result jsonb NOT NULL,
      state text NOT NULL CHECK (state IN ('granted', 'revoked')),
      created_at timestamptz NOT NULL DEFAULT now(),
      revoked_at timestamptz NULL)`);
    await q.query(`CREATE TABLE ${s}.release_log (
      seq integer PRIMARY KEY CHECK (seq >= 1),
      migration_id text NOT NULL,
      granted boolean NOT NULL,
      record jsonb NOT NULL,
      hash text NOT NULL UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now())`);
    await q.query(`CREATE INDEX release_log_migration ON ${s}.release_log (migration_id)`);
    await q.query(`CREATE TABLE ${s}.revoked_guest (
      vm_id text PRIMARY KEY,
      reason text NOT NULL,
      revoked_by text NOT NULL,
      revoked_at timestamptz NOT NULL DEFAULT now())`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE ${s}.revoked_guest`);
    await q.query(`DROP TABLE ${s}.release_log`);
    await q.query(`DROP TABLE ${s}.key_release`);
    await q.query(`DROP TABLE ${s}.nonce`);
  }
}
