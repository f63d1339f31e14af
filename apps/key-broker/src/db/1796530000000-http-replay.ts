import { type MigrationInterface, type QueryRunner } from 'typeorm';
import { KEY_BROKER_SCHEMA } from './migrations.js';

const s = `"${KEY_BROKER_SCHEMA}"`;

/**
 * `http_envelope_seen`: the id of every envelope the policy HTTP endpoint took, until it can no longer
 * pass the freshness check (`expires_at`). Shared by every replica and kept over restarts, so an
 * envelope is taken once whichever instance receives it, and again by none after a restart.
 */
export class KeyBrokerHttpReplay1796530000000 implements MigrationInterface {
  name = 'KeyBrokerHttpReplay1796530000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE ${s}.http_envelope_seen (
      id text PRIMARY KEY,
      source text NOT NULL,
      seen_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL)`);
    await q.query(`CREATE INDEX http_envelope_seen_expires_at ON ${s}.http_envelope_seen (expires_at)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE ${s}.http_envelope_seen`);
  }
}
