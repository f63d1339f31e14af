import { schemaFor } from '@ccm/contracts';
import { type MigrationInterface, type QueryRunner } from 'typeorm';

/** The vm-lifecycle's Postgres schema. */
export const VM_LIFECYCLE_SCHEMA = schemaFor('vm-lifecycle');
const s = `"${VM_LIFECYCLE_SCHEMA}"`;
export const HOST = `${s}.host`;
export const VM = `${s}.vm`;
export const APPLIED = `${s}.applied_event`;

/**
 * - `host`: one row per host-agent's host, from its `registered` events (capabilities, SEV mode,
 *   platform chain digest and firmware version as its TCB) and heartbeats (`last_seen_at`, what runs);
 * - `vm`: one row per (host, VM): what the registry wants of it (`desired`) beside the phase the host
 *   last reported (`observed`, as of `observed_at`), its phase history, spec, workloads, and the
 *   migration whose `provision-vm` launched it (one VM per migration);
 * - `applied_event`: the host events already applied, by envelope id with their stream sequence, so a
 *   redelivered event changes nothing (heartbeats are not recorded: applying one twice is a no-op).
 */
export class VmLifecycleTables1796300000000 implements MigrationInterface {
  name = 'VmLifecycleTables1796300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE ${HOST} (
      host_id text PRIMARY KEY,
      instance_id text NOT NULL,
      capabilities jsonb NOT NULL,
      sev_mode text NOT NULL,
      tcb jsonb NULL,
      pdh_sha256 text NULL,
      chain jsonb NULL,
      registered_at timestamptz NOT NULL,
      last_seen_at timestamptz NOT NULL,
      heartbeat_seq integer NOT NULL DEFAULT 0,
      vms jsonb NOT NULL DEFAULT '{}',
      active_migrations integer NOT NULL DEFAULT 0)`);
    await q.query(`CREATE TABLE ${VM} (
      host_id text NOT NULL,
      vm_id text NOT NULL,
      desired text NULL CHECK (desired IN ('Running', 'Destroyed')),
      observed text NULL,
      observed_at timestamptz NULL,
      reason text NULL,
      spec jsonb NULL,
      workloads jsonb NOT NULL DEFAULT '[]',
      provisioned_by text NULL UNIQUE,
      launch jsonb NULL,
      phase_history jsonb NOT NULL DEFAULT '[]',
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (host_id, vm_id))`);
    await q.query(`CREATE INDEX vm_by_id ON ${VM} (vm_id)`);
    await q.query(`CREATE TABLE ${APPLIED} (
      event_id text PRIMARY KEY,
      stream_seq bigint NULL,
      subject text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of [APPLIED, VM, HOST]) await q.query(`DROP TABLE ${t}`);
  }
}
