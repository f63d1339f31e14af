import { type INestApplication } from '@nestjs/common';
import { startTestStack, pollUntil, type TestStack } from '@ccm/testing';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServiceApp } from './service.js';

describe('service HTTP endpoints (supertest against the real app)', () => {
  let stack: TestStack;
  let app: INestApplication;

  beforeAll(async () => {
    stack = await startTestStack();
    ({ app } = await createServiceApp({ service: 'network-overlay', database: true }, stack.env()));
    await app.init();
  });
  afterAll(async () => {
    await app?.close();
    await stack?.stop();
  });

  it('GET /health is 200 with NATS and Postgres up', async () => {
    const res = await request(app.getHttpServer()).get('/health').expect(200);
    expect(res.body).toMatchObject({
      status: 'ok',
      info: { nats: { status: 'up' }, postgres: { status: 'up' } },
    });
  });

  it('GET /metrics serves Prometheus text with the service label', async () => {
    const res = await request(app.getHttpServer()).get('/metrics').expect(200);
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.text).toContain('process_cpu_user_seconds_total{service="network-overlay"');
  });

  it('GET /metrics?name= serves that one metric, labelled too; an unknown name is a typed JSON 404', async () => {
    const res = await request(app.getHttpServer()).get('/metrics?name=ccm_handlers_in_flight').expect(200);
    expect(res.text).toContain('# TYPE ccm_handlers_in_flight gauge');
    expect(res.text).not.toContain('process_cpu_user_seconds_total');
    const cpu = await request(app.getHttpServer())
      .get('/metrics?name=process_cpu_user_seconds_total')
      .expect(200);
    expect(cpu.text).toContain('process_cpu_user_seconds_total{service="network-overlay"');
    expect(cpu.text).not.toContain('ccm_handlers_in_flight');
    const none = await request(app.getHttpServer()).get('/metrics?name=no_such_metric').expect(404);
    expect(none.headers['content-type']).toContain('application/json');
    expect(none.body).toMatchObject({ error: { code: 'NOT_FOUND' } });
    await request(app.getHttpServer()).get('/metrics?name=a&name=b').expect(400);
  });

  it('an unknown route is a JSON 404, not a crash', async () => {
    const res = await request(app.getHttpServer()).get('/nope').expect(404);
    expect(res.body).toMatchObject({ statusCode: 404 });
  });

  it('GET /health is 503 naming NATS when the server goes away', async () => {
    await stack.nats.stop();
    const res = await pollUntil(
      'health to turn 503',
      () => request(app.getHttpServer()).get('/health'),
      (r) => r.status === 503,
    );
    expect(res.body).toMatchObject({ status: 'error', error: { nats: { status: 'down' } } });
  });
});
