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
