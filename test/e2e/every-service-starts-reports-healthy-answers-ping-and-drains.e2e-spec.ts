import { randomUUID } from 'node:crypto';
import {
  PingReplySchema,
  ReplySchema,
  ServicePingedSchema,
  STREAMS,
  subjects,
  type ServiceName,
} from '@ccm/contracts';
import { loadTrustStore, type TrustStore } from '@ccm/keys';
import { encodeEnvelope, openEnvelope, sealEnvelope } from '@ccm/messaging';
import {
  pollUntil,
  startServiceProcess,
  startTestStack,
  type ServiceProcess,
  type TestStack,
} from '@ccm/testing';
import { jetstreamManager } from '@nats-io/jetstream';
import { type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const APPS: Array<{ app: ServiceName; env?: Record<string, string>; ping: string; db: boolean }> = [
  { app: 'key-broker', ping: subjects.cmd('key-broker', 'ping'), db: true },
  { app: 'vm-lifecycle', ping: subjects.cmd('vm-lifecycle', 'ping'), db: true },
  { app: 'container-checkpoint', ping: subjects.cmd('container-checkpoint', 'ping'), db: true },
  { app: 'network-overlay', ping: subjects.cmd('network-overlay', 'ping'), db: true },
  { app: 'saga-coordinator', ping: subjects.cmd('saga-coordinator', 'ping'), db: true },
  { app: 'host-agent', env: { CCM_HOST_ID: 'host-a' }, ping: subjects.hostCmd('host-a', 'ping'), db: true },
  { app: 'guest-agent', env: { CCM_VM_ID: 'vm-1' }, ping: subjects.guestCmd('vm-1', 'ping'), db: false },
];

describe('every CCM service as a real process', () => {
  let stack: TestStack;
  let trust: TrustStore;
  let nc: NatsConnection;
  const procs = new Map<string, ServiceProcess>();

  beforeAll(async () => {
    stack = await startTestStack({ hostIds: ['host-a'] });
    trust = await loadTrustStore(stack.keysDir);
    nc = await stack.connectAs('operator');
    // Two at a time: this machine has two cores.
    for (let i = 0; i < APPS.length; i += 2) {
      const batch = await Promise.all(
        APPS.slice(i, i + 2).map((a) =>
          startServiceProcess(
            a.app,
            stack.env({ CCM_INSTANCE_ID: `${a.app}-e2e`, CCM_LOG_LEVEL: 'log', ...(a.env ?? {}) }),
            { readyTimeoutMs: 60_000 },
          ),
        ),
      );
      for (const p of batch) procs.set(p.app, p);
    }
  }, 240_000);

  afterAll(async () => {
    await Promise.allSettled([...procs.values()].map((p) => p.stop('SIGKILL')));
    await stack?.stop();
  });

  it.each(APPS)('$app reports healthy on /health with its dependencies', async ({ app, db }) => {
    const res = await fetch(`http://127.0.0.1:${procs.get(app)!.httpPort}/health`);
    const body = (await res.json()) as { status: string; info: Record<string, { status: string }> };
    expect(res.status).toBe(200);
    expect(body.status).toBe('ok');
    expect(body.info['nats']?.status).toBe('up');
    expect(body.info['postgres']?.status).toBe(db ? 'up' : undefined);
  });

  it.each(APPS)('$app answers a signed ping and publishes its pinged event', async ({ app, ping }) => {
    const echo = randomUUID();
    const req = sealEnvelope(await stack.identity('operator'), {
      natssubject: ping,
      type: ping,
      data: { message: echo },
    });
    const msg = await nc.request(ping, encodeEnvelope(req), { timeout: 10_000 });
    const reply = openEnvelope(msg.data, trust, ReplySchema, { subject: msg.subject });
    expect(reply.source).toBe(app);
    expect(reply.causationid).toBe(req.id);
    const result = PingReplySchema.parse(reply.data.ok ? reply.data.result : reply.data.error);
    expect(result).toMatchObject({ service: app, echo, instanceId: `${app}-e2e` });
    const jsm = await jetstreamManager(nc);
    const event = await pollUntil('pinged event in CCM_EVENTS', async () => {
      const m = await jsm.streams.getMessage(STREAMS.events.name, {
        last_by_subj: subjects.evt('service', app, 'pinged'),
      });
      const env = m ? openEnvelope(m.data, trust, ServicePingedSchema, { subject: m.subject }) : undefined;
      return env?.data.echo === echo ? env : undefined;
    });
    expect(event.source).toBe(app);
    expect(event.causationid).toBe(req.id);
  });

  it.each(APPS)('$app exposes Prometheus metrics', async ({ app }) => {
    const text = await (await fetch(`http://127.0.0.1:${procs.get(app)!.httpPort}/metrics`)).text();
    expect(text).toContain('ccm_messages_handled_total{subject=');
    expect(text).toContain(`service="${app}"`);
  });

  it.each(APPS)('$app drains and exits 0 on SIGTERM', async ({ app }) => {
    const p = procs.get(app)!;
    const exit = await p.stop('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    const messages = p.lines.map((l) => (typeof l === 'string' ? l : String(l['message'])));
    expect(messages).toContain('draining');
    expect(messages).toContain('handlers stopped');
    expect(messages).toContain('stopped');
  });
});
