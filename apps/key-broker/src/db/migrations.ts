import { schemaFor } from '@ccm/contracts';
import { type MigrationInterface, type QueryRunner } from 'typeorm';

/** The key-broker's Postgres schema: the guest owner's domain, read by no operator service. */
export const KEY_BROKER_SCHEMA = schemaFor('key-broker');
const s = `"${KEY_BROKER_SCHEMA}"`;

/**
 * - `owner_policy`: every version of every workload class's policy (never updated, only appended);
 * - `attestation`: one platform verdict per (migration, step), granted or refused, with the public
 *   evidence it was reached on (the host's `platform` reply) so later steps use what was verified;
 * - `transport_session`: the target chain released for a VM migration's SEND_START, one per migration;
 * - `launch_session`: one attested SEV launch per (host, VM): its TEK/TIK and the VM's identity secret
 *   and disk key. These are the guest owner's secrets; only this schema holds them.
 */
export class KeyBrokerTables1795500000000 implements MigrationInterface {
  name = 'KeyBrokerTables1795500000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE ${s}.owner_policy (
      workload_class text NOT NULL,
      version integer NOT NULL CHECK (version >= 1),
      document jsonb NOT NULL,
      digest text NOT NULL,
      changed_by text NOT NULL,
      changed_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (workload_class, version))`);
    await q.query(`CREATE TABLE ${s}.attestation (
      id text PRIMARY KEY,
      migration_id text NOT NULL,
      step text NOT NULL,
      host_id text NOT NULL,
      workload_id text NOT NULL,
      workload_class text NULL,
      policy_version integer NULL,
      ok boolean NOT NULL,
      verdict jsonb NOT NULL,
      evidence jsonb NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (migration_id, step))`);
    await q.query(`CREATE TABLE ${s}.transport_session (
      id text PRIMARY KEY,
      migration_id text NOT NULL UNIQUE,
      host_id text NOT NULL,
      attestation_id text NOT NULL REFERENCES ${s}.attestation (id),
      policy_version integer NOT NULL,
      pdh_sha256 text NOT NULL,
      chain jsonb NOT NULL,
      state text NOT NULL CHECK (state IN ('open', 'closed')),
      created_at timestamptz NOT NULL DEFAULT now(),
      closed_at timestamptz NULL)`);
    await q.query(`CREATE TABLE ${s}.launch_session (
      id text PRIMARY KEY,
      host_id text NOT NULL,
      vm_id text NOT NULL,
      workload_id text NOT NULL,
      workload_class text NOT NULL,
      policy_version integer NOT NULL,
      pdh_sha256 text NOT NULL,
      policy bigint NOT NULL,
      godh text NOT NULL,
      session text NOT NULL,
      tek text NOT NULL,
      tik text NOT NULL,
      state text NOT NULL CHECK (state IN ('started', 'secret-released')),
      launch_digest text NULL,
      identity_secret text NULL,
      disk_key text NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      released_at timestamptz NULL,
      UNIQUE (host_id, vm_id))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE ${s}.launch_session`);
    await q.query(`DROP TABLE ${s}.transport_session`);
    await q.query(`DROP TABLE ${s}.attestation`);
    await q.query(`DROP TABLE ${s}.owner_policy`);
  }
}
