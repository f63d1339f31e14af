import { type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * The tables every service with a database has in its own schema:
 * - `outbox`: events written in the same transaction as the state change; the relay publishes each to
 *   JetStream with the row id as Nats-Msg-Id, then stamps `sent_at`.
 * - `inbox`: one row per idempotency key with the stored reply, so a repeated command acts once.
 * - `ping`: the counter behind the `ping` wiring check.
 */
export function platformTablesMigration(schema: string): new () => MigrationInterface {
  const s = `"${schema}"`;
  return class PlatformTables1763800000000 implements MigrationInterface {
    name = 'PlatformTables1763800000000';
    async up(q: QueryRunner): Promise<void> {
      await q.query(`CREATE TABLE ${s}.outbox (
        id uuid PRIMARY KEY,
        subject text NOT NULL,
        envelope jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        sent_at timestamptz NULL,
        attempts integer NOT NULL DEFAULT 0,
        last_error text NULL)`);
      await q.query(`CREATE INDEX outbox_unsent ON ${s}.outbox (created_at) WHERE sent_at IS NULL`);
      await q.query(`CREATE TABLE ${s}.inbox (
        idempotency_key text PRIMARY KEY,
        subject text NOT NULL,
        reply jsonb NULL,
        created_at timestamptz NOT NULL DEFAULT now())`);
      await q.query(`CREATE TABLE ${s}.ping (
        instance_id text PRIMARY KEY,
        count integer NOT NULL,
        last_at timestamptz NOT NULL)`);
    }
    async down(q: QueryRunner): Promise<void> {
      await q.query(`DROP TABLE ${s}.ping`);
      await q.query(`DROP TABLE ${s}.inbox`);
      await q.query(`DROP TABLE ${s}.outbox`);
    }
  };
}

/**
 * The per-migration event hash chain (libs/contracts chain.ts): `event_chain` holds each chain's head
 * (last seq and hash), locked by the transaction that appends to it, so replicas sharing the schema
 * extend one chain in turn; the outbox records each row's chain position so the relay publishes a
 * chain's events in order.
 */
export function platformEventChainsMigration(schema: string): new () => MigrationInterface {
  const s = `"${schema}"`;
  return class PlatformEventChains1763800000005 implements MigrationInterface {
    name = 'PlatformEventChains1763800000005';
    async up(q: QueryRunner): Promise<void> {
      await q.query(`CREATE TABLE ${s}.event_chain (
        chain_id text PRIMARY KEY,
        seq integer NOT NULL,
        head text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now())`);
      await q.query(
        `ALTER TABLE ${s}.outbox ADD COLUMN chain_id text NULL, ADD COLUMN chain_seq integer NULL`,
      );
      await q.query(
        `CREATE INDEX outbox_unsent_chain ON ${s}.outbox (chain_id, chain_seq) WHERE sent_at IS NULL AND chain_id IS NOT NULL`,
      );
    }
    async down(q: QueryRunner): Promise<void> {
      await q.query(`DROP INDEX ${s}.outbox_unsent_chain`);
      await q.query(`ALTER TABLE ${s}.outbox DROP COLUMN chain_seq, DROP COLUMN chain_id`);
      await q.query(`DROP TABLE ${s}.event_chain`);
    }
  };
}

/**
 * Who may relay an outbox row: `publisher` names the identity and scope that wrote it (`host-agent@a`).
 * Instances of one service with different scopes (host-agents of several hosts) may share a schema, and
 * each may publish only its own scope's subjects, so each relay takes only its own rows. Rows written
 * before this column existed have none and any relay of the schema may take them.
 */
export function platformOutboxPublisherMigration(schema: string): new () => MigrationInterface {
  const s = `"${schema}"`;
  return class PlatformOutboxPublisher1763800000006 implements MigrationInterface {
    name = 'PlatformOutboxPublisher1763800000006';
    async up(q: QueryRunner): Promise<void> {
      await q.query(`ALTER TABLE ${s}.outbox ADD COLUMN publisher text NULL`);
      await q.query(
        `CREATE INDEX outbox_unsent_publisher ON ${s}.outbox (publisher, created_at) WHERE sent_at IS NULL`,
      );
    }
    async down(q: QueryRunner): Promise<void> {
      await q.query(`DROP INDEX ${s}.outbox_unsent_publisher`);
      await q.query(`ALTER TABLE ${s}.outbox DROP COLUMN publisher`);
    }
  };
}
