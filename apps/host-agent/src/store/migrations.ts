import { schemaFor } from '@ccm/contracts';
import { type MigrationInterface, type QueryRunner } from 'typeorm';

/** The host-agent's Postgres schema. */
export const HOST_AGENT_SCHEMA = schemaFor('host-agent');
const s = `"${HOST_AGENT_SCHEMA}"`;

/**
 * The host-agent's own tables:
 * - `vm`: one row per VM this host runs or ran (phase, spec, pid, runtime dir), with its phase history;
 * - `transfer`: one row per outgoing migration (parameters, last progress, final figures, failure).
 * Every host-agent shares the schema (one per host, one database), so rows are keyed by host id too.
 * Rows in final phases are kept as the host's record; a VM id in a final phase may be launched again.
 */
export class HostAgentTables1795400000000 implements MigrationInterface {
  name = 'HostAgentTables1795400000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE ${s}.vm (
      host_id text NOT NULL,
      vm_id text NOT NULL,
      driver text NOT NULL,
      origin text NOT NULL,
      phase text NOT NULL,
      reason text NULL,
      spec jsonb NOT NULL,
      sev jsonb NULL,
      pid integer NULL,
      run_dir text NOT NULL,
      incoming_uri text NULL,
      migration_id text NULL,
      phase_history jsonb NOT NULL DEFAULT '[]',
      created_at timestamptz NOT NULL DEFAULT now(),
      phase_changed_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (host_id, vm_id))`);
    await q.query(`CREATE TABLE ${s}.transfer (
      host_id text NOT NULL,
      migration_id text NOT NULL,
      vm_id text NOT NULL,
      phase text NOT NULL,
      uri text NOT NULL,
      params jsonb NOT NULL,
      step text NULL,
      progress jsonb NULL,
      figures jsonb NULL,
      error_code text NULL,
      reason text NULL,
      phase_history jsonb NOT NULL DEFAULT '[]',
      started_at timestamptz NOT NULL DEFAULT now(),
      phase_changed_at timestamptz NOT NULL DEFAULT now(),
      ended_at timestamptz NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (host_id, migration_id))`);
    await q.query(`CREATE INDEX transfer_vm ON ${s}.transfer (host_id, vm_id, started_at DESC)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE ${s}.transfer`);
    await q.query(`DROP TABLE ${s}.vm`);
  }
}

/** `transfer.postcopy`: when a migration switched to post-copy and when it passed its point of no return. */
export class HostAgentTransferPostcopy1796100000000 implements MigrationInterface {
  name = 'HostAgentTransferPostcopy1796100000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${s}.transfer ADD COLUMN postcopy jsonb NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${s}.transfer DROP COLUMN postcopy`);
  }
}

/** `vm.guest_net`: the VM's lease on the host's guest network (CCM_GUEST_NET), kept across agent restarts. */
export class HostAgentVmGuestNet1797000000000 implements MigrationInterface {
  name = 'HostAgentVmGuestNet1797000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${s}.vm ADD COLUMN guest_net jsonb NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${s}.vm DROP COLUMN guest_net`);
  }
}

/**
 * `vm.resume_blocked`: set when a post-copy migration of the VM failed past the point of no return (the
 * destination may hold part of the guest), so `resume` refuses it until an operator acknowledges it.
 */
export class HostAgentVmResumeBlocked1797500000000 implements MigrationInterface {
  name = 'HostAgentVmResumeBlocked1797500000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${s}.vm ADD COLUMN resume_blocked jsonb NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${s}.vm DROP COLUMN resume_blocked`);
  }
}

/**
 * `vm.guest_net_lent_at`: when a VM that moved away left its guest address lent here (the guest still
 * uses it on another host); cleared when that guest ends anywhere, which frees the address.
 */
export class HostAgentVmGuestNetLent1797600000000 implements MigrationInterface {
  name = 'HostAgentVmGuestNetLent1797600000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${s}.vm ADD COLUMN guest_net_lent_at timestamptz NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ${s}.vm DROP COLUMN guest_net_lent_at`);
  }
}
