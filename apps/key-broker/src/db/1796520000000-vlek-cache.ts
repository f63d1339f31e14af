import { type MigrationInterface, type QueryRunner } from 'typeorm';
import { KEY_BROKER_SCHEMA } from './migrations.js';

const s = `"${KEY_BROKER_SCHEMA}"`;

/**
 * The certificate cache takes VLEKs too (filed under their product line's VLEK chain URL with their TCB
 * and cloud provider, libs/sev `kdsVlekUrl`), and remembers a VLEK's cloud provider (`csp_id`).
 */
export class KeyBrokerVlekCache1796520000000 implements MigrationInterface {
  name = 'KeyBrokerVlekCache1796520000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${s}.certificate_cache DROP CONSTRAINT certificate_cache_kind_check`);
    await q.query(`ALTER TABLE ${s}.certificate_cache ADD CONSTRAINT certificate_cache_kind_check
      CHECK (kind IN ('vcek', 'vlek', 'cek'))`);
    await q.query(`ALTER TABLE ${s}.certificate_cache ADD COLUMN csp_id text NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM ${s}.certificate_cache WHERE kind = 'vlek'`);
    await q.query(`ALTER TABLE ${s}.certificate_cache DROP COLUMN csp_id`);
    await q.query(`ALTER TABLE ${s}.certificate_cache DROP CONSTRAINT certificate_cache_kind_check`);
    await q.query(`ALTER TABLE ${s}.certificate_cache ADD CONSTRAINT certificate_cache_kind_check
      CHECK (kind IN ('vcek', 'cek'))`);
  }
}
