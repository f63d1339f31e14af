import { type MigrationInterface, type QueryRunner } from 'typeorm';
import { KEY_BROKER_SCHEMA } from './migrations.js';

const s = `"${KEY_BROKER_SCHEMA}"`;

/**
 * `revoked_migration`: every migration whose key was revoked (`revoke-migration-key`, or `rotate-keys`
 * after the move), whether or not a key had been released. A `release-migration-key` for a migration
 * marked here is refused: a release that arrives after the revocation answered (a late or re-sent
 * command after a rollback) must not grant a key nobody will revoke again.
 */
export class KeyBrokerMigrationRevocation1796540000000 implements MigrationInterface {
  name = 'KeyBrokerMigrationRevocation1796540000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE ${s}.revoked_migration (
      migration_id text PRIMARY KEY,
      why text NOT NULL,
      causation_id text NOT NULL,
      revoked_at timestamptz NOT NULL DEFAULT now())`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE ${s}.revoked_migration`);
  }
}
