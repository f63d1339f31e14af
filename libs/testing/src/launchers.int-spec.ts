import { createServer, type Server } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './ports.js';
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

describe('a port taken between choosing it and binding it', () => {
  let squatter: Server;
  let taken: number;
  beforeAll(async () => {
    squatter = createServer();
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
    const addr = squatter.address();
    taken = typeof addr === 'object' && addr ? addr.port : 0;
  });
  afterAll(async () => {
    await new Promise<void>((r) => squatter.close(() => r()));
  });

  /** Hands out the squatted port first, as a parallel test that won the race would leave it. */
  const takenFirst = (): (() => Promise<number>) => {
    let calls = 0;
    return () => (calls++ === 0 ? Promise.resolve(taken) : freePort());
  };

  it('Postgres moves on to another port and answers there', async () => {
    const postgres = await startPostgres({ pickPort: takenFirst() });
    try {
      expect(postgres.port).not.toBe(taken);
      const c = new pg.Client(postgres.url);
      await c.connect();
      const r = await c.query<{ one: number }>('select 1 as one');
      await c.end();
      expect(r.rows[0]?.one).toBe(1);
    } finally {
      await postgres.stop();
    }
  });

  it('nats-server moves on to another port and is healthy there', async () => {
    const nats = await startNatsServer({ pickPort: takenFirst() });
    try {
      expect(nats.port).not.toBe(taken);
      const res = await fetch(`http://127.0.0.1:${nats.monitorPort}/healthz`);
      expect(res.ok).toBe(true);
    } finally {
      await nats.stop();
    }
  });
});
