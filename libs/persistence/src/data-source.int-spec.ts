import { startPostgres, type RunningPostgres } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MigrationInterface, type QueryRunner } from 'typeorm';
import { openDataSource, PersistenceError } from './data-source.js';

class AddWidgets1763800000001 implements MigrationInterface {
  name = 'AddWidgets1763800000001';
  async up(q: QueryRunner): Promise<void> {
    await q.query('CREATE TABLE svc_a.widgets (id int PRIMARY KEY)');
  }
  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE svc_a.widgets');
  }
}

describe('openDataSource', () => {
  let pg: RunningPostgres;
  beforeAll(async () => {
    pg = await startPostgres();
  });
  afterAll(async () => {
    await pg?.stop();
  });

  it('creates the schema and runs platform and service migrations inside it, once, even from two replicas at once', async () => {
    const [a, b] = await Promise.all([
      openDataSource({ url: pg.url, schema: 'svc_a', migrations: [AddWidgets1763800000001] }),
      openDataSource({ url: pg.url, schema: 'svc_a', migrations: [AddWidgets1763800000001] }),
    ]);
    const tables = await a.query<Array<{ table_name: string }>>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'svc_a' ORDER BY table_name`,
    );
    expect(tables.map((t) => t.table_name)).toEqual([
      'event_chain',
      'inbox',
      'migrations',
      'outbox',
      'ping',
      'widgets',
    ]);
    const ran = await a.query<Array<{ name: string }>>('SELECT name FROM svc_a.migrations ORDER BY id');
    expect(ran.map((r) => r.name)).toEqual([
      'PlatformTables1763800000000',
      'AddWidgets1763800000001',
      'PlatformEventChains1763800000005',
      'PlatformOutboxPublisher1763800000006',
    ]);
    await Promise.all([a.destroy(), b.destroy()]);
  });

  it('keeps schemas of different services apart', async () => {
    const b = await openDataSource({ url: pg.url, schema: 'svc_b' });
    const rows = await b.query<Array<{ n: number }>>(
      `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'svc_b'`,
    );
    expect(rows[0]?.n).toBe(5);
    await b.destroy();
  });

  it('fails with a typed error when Postgres is unreachable', async () => {
    const err = await openDataSource({ url: 'postgres://x:y@127.0.0.1:1/db', schema: 'svc_c' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PersistenceError);
    expect((err as PersistenceError).message).toContain('cannot connect to Postgres');
  });
});
