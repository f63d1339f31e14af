import { type MigrationInterface, type QueryRunner } from 'typeorm';
import { MIGRATION } from './schema.js';

/**
 * `migration.observed_chains`: the head (seq and hash) of each other publisher's hash chain for the
 * migration that the coordinator has seen, so its later events commit to them (cross-links).
 */
export class ObservedChains1796000000000 implements MigrationInterface {
  name = 'ObservedChains1796000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${MIGRATION} ADD COLUMN observed_chains jsonb NOT NULL DEFAULT '{}'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${MIGRATION} DROP COLUMN observed_chains`);
  }
}
