import { type MigrationSummary } from '@ccm/contracts';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { coordinatorWorld } from '../testing/world.js';
import { newMigration, settled } from '@ccm/testing';

describe('migration queries over NATS and HTTP', () => {
  const w = coordinatorWorld();
  const ids: Record<string, string> = {};
  const http = () => request(w.app.getHttpServer());

  beforeAll(async () => {
    const plan: Array<[string, { workload: string; sourceHost: string; targetHost: string }]> = [
      ['first', { workload: 'q1', sourceHost: 'h1', targetHost: 'h2' }],
      ['second', { workload: 'q2', sourceHost: 'h3', targetHost: 'h1' }],
      ['third', { workload: 'q3', sourceHost: 'h4', targetHost: 'h5' }],
      ['failed', { workload: 'q4', sourceHost: 'h1', targetHost: 'h6' }],
      ['fourth', { workload: 'q5', sourceHost: 'h2', targetHost: 'h1' }],
    ];
    for (const [name, req] of plan) {
      const { key, id } = newMigration();
      if (name === 'failed') {
        w.participants.plan(id, (c) =>
          c.step === 'join-overlay' ? { kind: 'fail', retryable: false, effect: 'none' } : undefined,
        );
      }
      ids[name] = id;
      await w.operator.migrate(req, key);
      await settled(w.operator, id);
    }
  });

  it('gets one migration with its phase and step history', async () => {
    const m = await w.operator.get(ids['failed']);
    expect(m).toMatchObject({ id: ids['failed'], phase: 'RolledBack', workload: 'q4', sourceHost: 'h1' });
    expect(m.phaseHistory.map((h) => h.phase)).toEqual(['Pending', 'Running', 'Compensating', 'RolledBack']);
    const join = m.steps.find((s) => s.name === 'join-overlay')!;
    expect(join.attempts).toEqual([
      expect.objectContaining({
        kind: 'action',
        status: 'Failed',
        participant: 'network-overlay',
        command: 'add-peer',
        idempotencyKey: `${ids['failed']}:join-overlay:1`,
        error: expect.objectContaining({ code: 'INJECTED_FAILURE' }),
      }),
    ]);
    const provision = m.steps.find((s) => s.name === 'provision-target')!;
    expect(provision.attempts.map((a) => `${a.kind}:${a.status}`)).toEqual([
      'action:Succeeded',
      'compensation:Succeeded',
    ]);
  });

  it('answers NOT_FOUND for an id nobody requested', async () => {
    await expect(w.operator.get('mig-none')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('lists newest first, filtered by phase and by host (source or target)', async () => {
    const all = await w.operator.list();
    expect(all.items.map((m) => m.id)).toEqual(
      ['fourth', 'failed', 'third', 'second', 'first'].map((n) => ids[n]),
    );
    expect((await w.operator.list({ phase: 'RolledBack' })).items.map((m) => m.id)).toEqual([ids['failed']]);
    expect((await w.operator.list({ host: 'h1' })).items.map((m) => m.id)).toEqual(
      ['fourth', 'failed', 'second', 'first'].map((n) => ids[n]),
    );
    expect((await w.operator.list({ host: 'h1', phase: 'Succeeded' })).items).toHaveLength(3);
    expect((await w.operator.list({ phase: 'Running' })).items).toEqual([]);
  });

  it('pages with a cursor until every migration was seen once', async () => {
    const seen: MigrationSummary[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await w.operator.list({ limit: 2, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items);
      cursor = page.nextCursor;
      pages += 1;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen.map((m) => m.id)).toEqual((await w.operator.list()).items.map((m) => m.id));
  });

  it('refuses a malformed list query over NATS with a typed error', async () => {
    await expect(w.operator.list({ limit: 0 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  describe('HTTP', () => {
    it('GET /migrations/:id is the same detail as over NATS', async () => {
      const res = await http().get(`/migrations/${ids['first']}`).expect(200);
      expect(res.body).toEqual(await w.operator.get(ids['first']));
    });

    it('GET /migrations filters and pages', async () => {
      const res = await http().get('/migrations?phase=Succeeded&host=h1&limit=2').expect(200);
      expect(res.body.items.map((m: MigrationSummary) => m.id)).toEqual([ids['fourth'], ids['second']]);
      const next = await http().get(
        `/migrations?phase=Succeeded&host=h1&limit=2&cursor=${res.body.nextCursor}`,
      );
      expect(next.body).toEqual({ items: [expect.objectContaining({ id: ids['first'] })] });
    });

    it('GET /migrations/:id of an unknown id is a typed 404', async () => {
      const res = await http().get('/migrations/mig-none').expect(404);
      expect(res.body).toEqual({
        statusCode: 404,
        error: { code: 'NOT_FOUND', retryable: false, message: 'no migration mig-none' },
      });
    });

    it.each([
      ['/migrations?limit=0', 'limit'],
      ['/migrations?limit=ten', 'limit'],
      ['/migrations?phase=Dancing', 'phase'],
      ['/migrations?host=a.b', 'host'],
      ['/migrations?cursor=42', 'cursor'],
      ['/migrations?colour=red', 'colour'],
      ['/migrations?phase=Running&phase=Pending', 'phase'],
      ['/migrations/not.an.id', 'migrationId'],
    ])('%s is a typed 400 naming %s', async (url, field) => {
      const res = await http().get(url).expect(400);
      expect(res.body.statusCode).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'VALIDATION_FAILED', retryable: false });
      expect(res.body.error.message).toContain(field);
      expect(res.body.error.details.problems.length).toBeGreaterThan(0);
    });
  });
});
