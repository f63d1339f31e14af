import { type MigrationInterface, type QueryRunner } from 'typeorm';
import { KEY_BROKER_SCHEMA } from './migrations.js';

const s = `"${KEY_BROKER_SCHEMA}"`;

/**
 * `certificate_cache`: the VCEKs and CEKs the guest owner fetched from AMD's KDS and put here (the
 * broker has no network), each under its KDS URL (a VCEK's names its chip id and TCB; a CEK's the
 * chip's GET_ID value). Public certificates only.
 */
export class KeyBrokerCertificateCache1796400000000 implements MigrationInterface {
  name = 'KeyBrokerCertificateCache1796400000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE ${s}.certificate_cache (
      kds_url text PRIMARY KEY,
      kind text NOT NULL CHECK (kind IN ('vcek', 'cek')),
      product_line text NULL,
      certificate text NOT NULL,
      sha256 text NOT NULL,
      added_by text NOT NULL,
      added_at timestamptz NOT NULL DEFAULT now())`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE ${s}.certificate_cache`);
  }
}
