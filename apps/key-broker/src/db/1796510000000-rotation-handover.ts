import { type MigrationInterface, type QueryRunner } from 'typeorm';
import { KEY_BROKER_SCHEMA } from './migrations.js';

const s = `"${KEY_BROKER_SCHEMA}"`;

/**
 * What `rotate-keys` hands over to the target after a container migration:
 * - `key_release.target_public_key`: the X25519 identity key the target's evidence bound at the grant
 *   (public, base64), the key the workload's secret is sealed to after the move;
 * - `workload_secret`: each workload secret issued to a guest (id, generation, holder and the SHA-256
 *   of the secret; the secret itself exists only sealed in the rotation's reply and in the guest);
 * - `revoked_placement`: a guest a workload moved away from: its evidence is refused for releases of
 *   that workload from then on (the guest may still run other workloads).
 */
export class KeyBrokerRotationHandover1796510000000 implements MigrationInterface {
  name = 'KeyBrokerRotationHandover1796510000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${s}.key_release ADD COLUMN target_public_key text NULL`);
    await q.query(`CREATE TABLE ${s}.workload_secret (
      id text PRIMARY KEY,
      workload_id text NOT NULL,
      generation integer NOT NULL CHECK (generation >= 1),
      migration_id text NOT NULL UNIQUE,
      holder_vm text NOT NULL,
      sha256 text NOT NULL,
      issued_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (workload_id, generation))`);
    await q.query(`CREATE TABLE ${s}.revoked_placement (
      vm_id text NOT NULL,
      workload_id text NOT NULL,
      migration_id text NOT NULL,
      reason text NOT NULL,
      revoked_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (vm_id, workload_id))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE ${s}.revoked_placement`);
    await q.query(`DROP TABLE ${s}.workload_secret`);
    await q.query(`ALTER TABLE ${s}.key_release DROP COLUMN target_public_key`);
  }
}
