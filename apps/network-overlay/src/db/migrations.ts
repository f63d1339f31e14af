import { schemaFor } from '@ccm/contracts';
import { type MigrationInterface, type QueryRunner } from 'typeorm';

/** The network-overlay's Postgres schema. */
export const OVERLAY_SCHEMA = schemaFor('network-overlay');
const s = `"${OVERLAY_SCHEMA}"`;

/**
 * - `overlay`: one row per overlay; its row lock makes one writer per overlay (allocation, admission,
 *   moves); overlapping CIDRs are excluded by the database itself.
 * - `address`: every address handed out (a peer's node address or a workload's /32), unique per
 *   overlay; `holder_vm` is the peer that holds it now.
 * - `peer`: admitted guests (WireGuard public key, endpoint, the evidence digest they were admitted on).
 * - `revoked_vm`: guests revoked everywhere; never admitted again.
 * - `move`: one row per migration's cut-over, with its figures, until reverted.
 */
export class OverlayTables1795500000000 implements MigrationInterface {
  name = 'OverlayTables1795500000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE ${s}.overlay (
      overlay_id text PRIMARY KEY,
      cidr cidr NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      EXCLUDE USING gist (cidr inet_ops WITH &&))`);
    await q.query(`CREATE TABLE ${s}.peer (
      overlay_id text NOT NULL REFERENCES ${s}.overlay (overlay_id),
      vm_id text NOT NULL,
      public_key text NOT NULL,
      endpoint text NULL,
      evidence_digest text NOT NULL,
      admission_id text NOT NULL,
      admitted_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (overlay_id, vm_id),
      UNIQUE (overlay_id, public_key))`);
    await q.query(`CREATE TABLE ${s}.address (
      overlay_id text NOT NULL REFERENCES ${s}.overlay (overlay_id),
      ip inet NOT NULL,
      kind text NOT NULL CHECK (kind IN ('node', 'workload')),
      owner_id text NOT NULL,
      holder_vm text NOT NULL,
      port integer NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (overlay_id, ip),
      UNIQUE (overlay_id, kind, owner_id))`);
    await q.query(`CREATE TABLE ${s}.revoked_vm (
      vm_id text PRIMARY KEY,
      reason text NOT NULL,
      revoked_at timestamptz NOT NULL DEFAULT now())`);
    await q.query(`CREATE TABLE ${s}.move (
      migration_id text PRIMARY KEY,
      overlay_id text NOT NULL,
      workload_id text NOT NULL,
      ip inet NOT NULL,
      source_vm text NOT NULL,
      target_vm text NOT NULL,
      state text NOT NULL CHECK (state IN ('moved', 'reverted')),
      figures jsonb NOT NULL,
      moved_at timestamptz NOT NULL DEFAULT now(),
      reverted_at timestamptz NULL)`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of ['move', 'revoked_vm', 'address', 'peer', 'overlay'])
      await q.query(`DROP TABLE ${s}.${t}`);
  }
}
