import { type MigrationInterface, type QueryRunner } from 'typeorm';
import { MIGRATION } from './schema.js';

/**
 * `migration.progress_seq`: the CCM_EVENTS sequence of the data-plane report the row's `progress`
 * came from, so a report handled after a newer one (another replica, a redelivery) cannot set the
 * migration's progress back.
 */
export class ProgressSeq1795399000000 implements MigrationInterface {
  name = 'ProgressSeq1795399000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${MIGRATION} ADD COLUMN progress_seq bigint NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${MIGRATION} DROP COLUMN progress_seq`);
  }
}
