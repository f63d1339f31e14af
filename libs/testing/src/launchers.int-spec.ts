import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type RunningNats } from './nats-server.js';
import { startPostgres, type RunningPostgres } from './postgres.js';

describe('throw-away stack launchers', () => {
  let nats: RunningNats;
  let postgres: RunningPostgres;
  beforeAll(async () => {
    [nats, postgres] = await Promise.all([startNatsServer(), startPostgres()]);
  });
  afterAll(async () => {
    await Promise.all([nats?.stop(), postgres?.stop()]);
  });

  it('starts nats-server with JetStream enabled', async () => {
    const res = await fetch(`http://127.0.0.1:${nats.monitorPort}/jsz`);
    const body = (await res.json()) as { config?: { store_dir?: string } };
    expect(body.config?.store_dir).toContain(nats.dir);
  });

  it('starts a Postgres that answers queries', async () => {
    const c = new pg.Client(postgres.url);
    await c.connect();
    const r = await c.query<{ two: number }>('select 1 + 1 as two');
    await c.end();
    expect(r.rows[0]?.two).toBe(2);
  });
});
