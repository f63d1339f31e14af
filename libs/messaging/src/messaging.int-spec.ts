import { randomUUID } from 'node:crypto';
import { Injectable, type INestApplication } from '@nestjs/common';
import {
  CcmError,
  HOST_VERBS,
  hostCommandSubject,
  ReplySchema,
  STREAMS,
  subjects,
  type Envelope,
  type Reply,
} from '@ccm/contracts';
import { loadTrustStore, type Identity, type TrustStore } from '@ccm/keys';
import { DATA_SOURCE } from '@ccm/persistence';
import { createServiceApp } from '@ccm/runtime';
import {
  ccmFailure,
  pollUntil,
  startNatsServer,
  startTestStack,
  type RunningNats,
  type TestStack,
} from '@ccm/testing';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NATS_AUTH_FILE } from '@ccm/keys';
import { ensureStreams } from './connection.js';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DataSource, type MigrationInterface, type QueryRunner } from 'typeorm';
import { z } from 'zod';
import { ack, OnJetStream, OnRequest, type MessageContext, type Outcome } from './decorators.js';
import { encodeEnvelope, openEnvelope, sealEnvelope } from './envelope-codec.js';
import { MessageBus } from './bus.js';
import { OutboxService } from './outbox.service.js';
import { METRICS_REGISTRY } from './options.js';
import { HandlerRegistry } from './registry.js';
import { type Registry } from 'prom-client';

const PROBE = 'ccm.cmd.vm-lifecycle.probe';
/** A command handled without the inbox (like the host-agent's waits), held until the test lets it go. */
const WAIT = 'ccm.cmd.vm-lifecycle.probe-wait';
const PROBED = (id: string) => subjects.evt('vm', id, 'probed');
/** A host whose commands the test itself takes (as its pinned host-agent) to lose some of them. */
const RESEND_HOST = 'h-resend';

class ProbeTable1763800000100 implements MigrationInterface {
  name = 'ProbeTable1763800000100';
  async up(q: QueryRunner): Promise<void> {
    await q.query('CREATE TABLE vm_lifecycle.probe_effects (id serial PRIMARY KEY, n int NOT NULL)');
  }
  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE vm_lifecycle.probe_effects');
  }
}

@Injectable()
class ProbeHandlers {
  consumed: Array<{ n: number; deliveries: number }> = [];

  @OnRequest({ subject: PROBE, schema: z.object({ n: z.number().int() }), idempotent: true })
  async probe(req: { n: number }, ctx: MessageContext): Promise<{ effects: number; n: number }> {
    await ctx.manager!.query('INSERT INTO vm_lifecycle.probe_effects (n) VALUES ($1)', [req.n]);
    // Hold the transaction open a moment so concurrent duplicates really overlap.
    await ctx.manager!.query('SELECT pg_sleep(0.05)');
    const rows = await ctx.manager!.query<Array<{ c: number }>>(
      'SELECT count(*)::int AS c FROM vm_lifecycle.probe_effects WHERE n = $1',
      [req.n],
    );
    if (req.n < 0) throw new CcmError('REFUSED', 'negative probes are refused', { retryable: false });
    return { effects: rows[0].c, n: req.n };
  }

  waits = 0;
  letGo!: () => void;
  private readonly held = new Promise<void>((r) => (this.letGo = r));

  @OnRequest({ subject: WAIT, schema: z.object({ n: z.number().int() }) })
  async wait(req: { n: number }): Promise<{ waits: number; n: number }> {
    this.waits += 1;
    await this.held;
    return { waits: this.waits, n: req.n };
  }

  @OnJetStream({
    stream: 'events',
    durable: 'probe-events',
    filterSubject: 'ccm.evt.vm.*.probed',
    schema: z.object({ poison: z.boolean() }),
  })
  onProbed(data: { poison: boolean }, ctx: MessageContext): Promise<Outcome> {
    this.consumed.push({ n: data.poison ? -1 : 1, deliveries: ctx.deliveryCount ?? 0 });
    if (data.poison) return Promise.reject(new Error('cannot digest this'));
    return Promise.resolve(ack());
  }

  /** A second reader of the same events (as the coordinator's chain-witness reads every event). */
  @OnJetStream({
    stream: 'events',
    durable: 'probe-every-vm-event',
    filterSubject: 'ccm.evt.vm.>',
    schema: z.unknown(),
  })
  onAnyVmEvent(): Promise<Outcome> {
    return Promise.resolve(ack());
  }
}

describe('messaging against a real nats-server and Postgres', () => {
  let stack: TestStack;
  let app: INestApplication;
  let operator: Identity;
  let nc: NatsConnection;

  const send = async (bytes: Uint8Array, subject = PROBE): Promise<Envelope<Reply>> => {
    const msg = await nc.request(subject, bytes, { timeout: 5_000 });
    return openEnvelope(msg.data, trustOf(), ReplySchema, { subject: msg.subject });
  };
  let trustOf: () => TrustStore;
  const signed = (
    data: unknown,
    extra: { idempotencykey?: string; correlationid?: string } = {},
    subject = PROBE,
  ) =>
    encodeEnvelope(
      sealEnvelope(operator, {
        natssubject: subject,
        type: subject,
        data,
        idempotencykey: randomUUID(),
        ...extra,
      }),
    );

  beforeAll(async () => {
    stack = await startTestStack({
      hostIds: [RESEND_HOST],
      extraConsumers: {
        'vm-lifecycle': [
          { stream: 'events', durable: 'probe-events', filterSubject: 'ccm.evt.vm.*.probed' },
          { stream: 'events', durable: 'probe-every-vm-event', filterSubject: 'ccm.evt.vm.>' },
        ],
      },
    });
    const trust = await loadTrustStore(stack.keysDir);
    trustOf = () => trust;
    ({ app } = await createServiceApp(
      {
        service: 'vm-lifecycle',
        database: true,
        providers: [ProbeHandlers],
        migrations: [ProbeTable1763800000100],
      },
      stack.env({ CCM_MAX_DELIVER: '3', CCM_OUTBOX_POLL_MS: '50' }),
    ));
    await app.init();
    operator = await stack.identity('operator');
    nc = await stack.connectAs('operator');
  });
  afterAll(async () => {
    await app?.close();
    await stack?.stop();
  });

  it('created the three streams with their storage and retention', async () => {
    const jsm = await jetstreamManager(nc);
    const cfg = async (name: string) => (await jsm.streams.info(name)).config;
    expect(await cfg(STREAMS.events.name)).toMatchObject({
      subjects: ['ccm.evt.>'],
      storage: 'file',
      retention: 'limits',
    });
    expect(await cfg(STREAMS.requests.name)).toMatchObject({
      subjects: ['ccm.req.>'],
      storage: 'file',
      retention: 'workqueue',
    });
    expect(await cfg(STREAMS.deadLetters.name)).toMatchObject({
      subjects: ['ccm.dlq.>'],
      storage: 'file',
      retention: 'limits',
    });
  });

  it('refuses a command without an idempotency key', async () => {
    const reply = await send(
      encodeEnvelope(sealEnvelope(operator, { natssubject: PROBE, type: PROBE, data: { n: 1 } })),
    );
    expect(reply.data).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
  });

  it('answers a valid signed request', async () => {
    const reply = await send(signed({ n: 1 }));
    expect(reply.source).toBe('vm-lifecycle');
    expect(reply.data).toEqual({ ok: true, result: { effects: 1, n: 1 } });
  });

  it.each([
    ['a bad payload', () => signed({ n: 'one' }), 'VALIDATION_FAILED'],
    ['a non-JSON message', () => new TextEncoder().encode('not json'), 'MALFORMED_MESSAGE'],
    [
      'an unsigned envelope',
      () => {
        const env = sealEnvelope(operator, {
          natssubject: PROBE,
          type: PROBE,
          data: { n: 2 },
          idempotencykey: randomUUID(),
        });
        return encodeEnvelope({ ...env, signature: undefined, signerkey: undefined });
      },
      'SIGNATURE_MISSING',
    ],
    [
      'a tampered payload',
      () => {
        const env = sealEnvelope(operator, {
          natssubject: PROBE,
          type: PROBE,
          data: { n: 2 },
          idempotencykey: randomUUID(),
        });
        return encodeEnvelope({ ...env, data: { n: 3 } });
      },
      'SIGNATURE_INVALID',
    ],
    [
      'a key nobody trusts',
      () => {
        const stranger = { ...operator, keyId: 'A'.repeat(43) };
        return encodeEnvelope(
          sealEnvelope(stranger, {
            natssubject: PROBE,
            type: PROBE,
            data: { n: 2 },
            idempotencykey: randomUUID(),
          }),
        );
      },
      'UNKNOWN_SIGNER',
    ],
  ])('gives %s a typed error and keeps serving', async (_what, make, code) => {
    const reply = await send(make());
    expect(reply.data.ok).toBe(false);
    expect(!reply.data.ok && reply.data.error.code).toBe(code);
    expect(!reply.data.ok && reply.data.error.retryable).toBe(false);
    const after = await send(signed({ n: 100 }));
    expect(after.data.ok).toBe(true);
  });

  /**
   * Takes the host's `describe` as its host-agent and drops the first `lose` deliveries (a callee
   * killed with the request in hand); answers the later ones with how many it saw.
   */
  const lossyHost = async (lose: number) => {
    const subject = hostCommandSubject(RESEND_HOST, HOST_VERBS.describe);
    const host = await stack.identity('host-agent', RESEND_HOST);
    const hc = await stack.connectAs('host-agent', RESEND_HOST);
    const seen: Array<{ id: string; key: string }> = [];
    const sub = hc.subscribe(subject, {
      callback: (_err, m) => {
        const env = JSON.parse(new TextDecoder().decode(m.data)) as { id: string; idempotencykey: string };
        seen.push({ id: env.id, key: env.idempotencykey });
        if (seen.length <= lose) return;
        const reply = sealEnvelope(host, {
          natssubject: m.reply ?? '',
          type: `${subject}.reply`,
          causationid: env.id,
          data: ReplySchema.parse({ ok: true, result: { seen: seen.length } }),
        });
        m.respond(encodeEnvelope(reply));
      },
    });
    await hc.flush();
    return { subject, seen, stop: () => sub.unsubscribe() };
  };

  it('sends an unanswered request again with the same idempotency key until it is answered', async () => {
    const host = await lossyHost(2);
    const resends: number[] = [];
    try {
      const r = await app.get(MessageBus).request(host.subject, {}, z.object({ seen: z.number() }), {
        idempotencyKey: 'resend-1',
        timeoutMs: 20_000,
        resendEveryMs: 150,
        onResend: (n) => resends.push(n),
      });
      expect(r.seen).toBe(3);
      expect(resends).toEqual([2, 3]);
      // Three envelopes of one command: each its own id, all the same key.
      expect(new Set(host.seen.map((s) => s.id)).size).toBe(3);
      expect(host.seen.map((s) => s.key)).toEqual(['resend-1', 'resend-1', 'resend-1']);
    } finally {
      host.stop();
    }
  });

  it('ends a request sent again and never answered with TIMEOUT at its deadline', async () => {
    const host = await lossyHost(Number.MAX_SAFE_INTEGER);
    try {
      const err = await ccmFailure(
        app.get(MessageBus).request(host.subject, {}, z.unknown(), {
          idempotencyKey: 'resend-2',
          timeoutMs: 600,
          resendEveryMs: 150,
        }),
      );
      expect(err.code).toBe('TIMEOUT');
      expect(host.seen.length).toBeGreaterThanOrEqual(3);
    } finally {
      host.stop();
    }
  });

  it('acts once for the same idempotency key sent twice, and returns the first reply', async () => {
    const first = await send(signed({ n: 7 }, { idempotencykey: 'probe-7' }));
    const second = await send(signed({ n: 7 }, { idempotencykey: 'probe-7' }));
    expect(first.data).toEqual({ ok: true, result: { effects: 1, n: 7 } });
    expect(second.data).toEqual(first.data);
  });

  it('acts once when ten copies of one command arrive concurrently', async () => {
    const replies = await Promise.all(
      Array.from({ length: 10 }, () => send(signed({ n: 8 }, { idempotencykey: 'probe-8' }))),
    );
    for (const r of replies) expect(r.data).toEqual({ ok: true, result: { effects: 1, n: 8 } });
    const ds = app.get<DataSource>(DATA_SOURCE);
    const rows = await ds.query<Array<{ c: number }>>(
      'SELECT count(*)::int AS c FROM vm_lifecycle.probe_effects WHERE n = 8',
    );
    expect(rows[0].c).toBe(1);
  });

  it('joins a repeat of a command still in flight to the run in hand (a re-send acts once), counted in flight once', async () => {
    const handlers = app.get(ProbeHandlers);
    const registry = app.get<Registry>(METRICS_REGISTRY);
    const inFlight = () => registry.getSingleMetricAsString('ccm_handlers_in_flight');
    const timed = async () => {
      const text = await registry.metrics();
      const count = (name: string) =>
        [...text.matchAll(new RegExp(`^${name}\\{[^}]*subject="${WAIT}"[^}]*\\} (\\S+)$`, 'gm'))].reduce(
          (t, m) => t + Number(m[1]),
          0,
        );
      return {
        timed: count('ccm_message_handler_seconds_count'),
        handled: count('ccm_messages_handled_total'),
      };
    };
    const before = await timed();
    // Five deliveries of one command, each its own envelope (as a requester's re-sends are).
    const replies = Array.from({ length: 5 }, () =>
      send(signed({ n: 9 }, { idempotencykey: 'wait-9', correlationid: 'mig-9' }, WAIT), WAIT),
    );
    await pollUntil('the first delivery to be taken', () => handlers.waits === 1);
    // Every copy has reached the service once a later request on the same connection is answered.
    await nc.flush();
    await send(signed({ n: 10 }));
    // One run in hand, under its subject and migration; the joined copies do not count again.
    expect(await inFlight()).toMatch(
      new RegExp(`^ccm_handlers_in_flight\\{subject="${WAIT}",migration="mig-9"[^}]*\\} 1$`, 'm'),
    );
    handlers.letGo();
    for (const r of await Promise.all(replies))
      expect(r.data).toEqual({ ok: true, result: { waits: 1, n: 9 } });
    expect(handlers.waits).toBe(1);
    // Five deliveries handled, one run timed: the re-sends' waits are not handler time again.
    const after = await timed();
    expect(after.handled - before.handled).toBe(5);
    expect(after.timed - before.timed).toBe(1);
    // Settled: the label set is gone, not left at 0.
    expect(await inFlight()).not.toContain(WAIT);
  });

  it('stores a definite refusal as the reply and rolls back its effects', async () => {
    const a = await send(signed({ n: -5 }, { idempotencykey: 'probe-neg' }));
    const b = await send(signed({ n: -5 }, { idempotencykey: 'probe-neg' }));
    expect(a.data).toMatchObject({ ok: false, error: { code: 'REFUSED' } });
    expect(b.data).toEqual(a.data);
    const ds = app.get<DataSource>(DATA_SOURCE);
    const rows = await ds.query<Array<{ c: number }>>(
      'SELECT count(*)::int AS c FROM vm_lifecycle.probe_effects WHERE n = -5',
    );
    expect(rows[0].c).toBe(0);
  });

  it('commits an event only with its state change', async () => {
    const outbox = app.get(OutboxService);
    const jsm = await jetstreamManager(nc);
    await outbox.transaction(async (m) => {
      await outbox.enqueue(m, PROBED('committed'), { type: 'ccm.vm.probed', data: { poison: false } });
    });
    await outbox
      .transaction(async (m) => {
        await outbox.enqueue(m, PROBED('rolled-back'), { type: 'ccm.vm.probed', data: { poison: false } });
        throw new Error('state change failed');
      })
      .catch(() => undefined);
    await pollUntil('the committed event in CCM_EVENTS', () =>
      jsm.streams.getMessage(STREAMS.events.name, { last_by_subj: PROBED('committed') }),
    );
    const ds = app.get<DataSource>(DATA_SOURCE);
    const rows = await ds.query<Array<{ c: number }>>(
      `SELECT count(*)::int AS c FROM vm_lifecycle.outbox WHERE subject = $1`,
      [PROBED('rolled-back')],
    );
    expect(rows[0].c).toBe(0);
    const info = await jsm.streams.info(STREAMS.events.name, {
      subjects_filter: PROBED('rolled-back'),
    });
    expect(info.state.subjects?.[PROBED('rolled-back')] ?? 0).toBe(0);
  });

  it('parks a message that keeps failing on the dead-letter subject after the configured deliveries', async () => {
    const handlers = app.get(ProbeHandlers);
    const vm = await stack.connectAs('vm-lifecycle');
    const js = jetstream(vm);
    const env = sealEnvelope(await stack.identity('vm-lifecycle'), {
      natssubject: PROBED('poison'),
      type: 'ccm.vm.probed',
      data: { poison: true },
    });
    await js.publish(PROBED('poison'), encodeEnvelope(env), { msgID: env.id });
    const jsm = await jetstreamManager(nc);
    const parked = await pollUntil(
      'the poison message in CCM_DLQ',
      () =>
        jsm.streams.getMessage(STREAMS.deadLetters.name, {
          last_by_subj: subjects.dlq('vm-lifecycle', 'probe-events'),
        }),
      Boolean,
      { timeoutMs: 15_000 },
    );
    expect(parked.header.get('Ccm-Dlq-Subject')).toBe(PROBED('poison'));
    expect(parked.header.get('Ccm-Dlq-Reason')).toContain('cannot digest this');
    expect(handlers.consumed.filter((c) => c.n === -1).map((c) => c.deliveries)).toEqual([1, 2, 3]);
  });

  it('parks a tampered event at once without running the handler', async () => {
    const handlers = app.get(ProbeHandlers);
    const before = handlers.consumed.length;
    const vm = await stack.connectAs('vm-lifecycle');
    const env = sealEnvelope(await stack.identity('vm-lifecycle'), {
      natssubject: PROBED('tampered'),
      type: 'ccm.vm.probed',
      data: { poison: false },
    });
    await jetstream(vm).publish(PROBED('tampered'), encodeEnvelope({ ...env, source: 'key-broker' }), {
      msgID: env.id,
    });
    const jsm = await jetstreamManager(nc);
    const parked = await pollUntil('the tampered message in CCM_DLQ', async () => {
      const m = await jsm.streams.getMessage(STREAMS.deadLetters.name, {
        last_by_subj: subjects.dlq('vm-lifecycle', 'probe-events'),
      });
      return m?.header.get('Ccm-Dlq-Subject') === PROBED('tampered') ? m : undefined;
    });
    expect(parked.header.get('Ccm-Dlq-Reason')).toContain('SIGNATURE_INVALID');
    expect(handlers.consumed.length).toBe(before);
  });

  it('two consumers that refuse the same event each park their own copy (neither is dropped as a duplicate)', async () => {
    const vm = await stack.connectAs('vm-lifecycle');
    const env = sealEnvelope(await stack.identity('vm-lifecycle'), {
      natssubject: PROBED('refused-twice'),
      type: 'ccm.vm.probed',
      data: { poison: false },
    });
    const ack = await jetstream(vm).publish(
      PROBED('refused-twice'),
      encodeEnvelope({ ...env, source: 'key-broker' }),
      { msgID: env.id },
    );
    const jsm = await jetstreamManager(nc);
    for (const durable of ['probe-events', 'probe-every-vm-event']) {
      const parked = await pollUntil(`the refused event parked by ${durable}`, async () => {
        const m = await jsm.streams.getMessage(STREAMS.deadLetters.name, {
          last_by_subj: subjects.dlq('vm-lifecycle', durable),
        });
        return m?.header.get('Ccm-Dlq-Stream-Seq') === String(ack.seq) ? m : undefined;
      });
      expect(parked.header.get('Ccm-Dlq-Reason'), durable).toContain('SIGNATURE_INVALID');
    }
  });

  it('parks an event whose payload was altered after signing, on its signature', async () => {
    const handlers = app.get(ProbeHandlers);
    const before = handlers.consumed.length;
    const vm = await stack.connectAs('vm-lifecycle');
    const env = sealEnvelope(await stack.identity('vm-lifecycle'), {
      natssubject: PROBED('altered'),
      type: 'ccm.vm.probed',
      data: { poison: false },
    });
    // The source is right and the signature is the signer's own: only the data changed.
    const altered = { ...env, data: { poison: true } };
    await jetstream(vm).publish(PROBED('altered'), encodeEnvelope(altered), { msgID: env.id });
    const jsm = await jetstreamManager(nc);
    const parked = await pollUntil('the altered message in CCM_DLQ', async () => {
      const m = await jsm.streams.getMessage(STREAMS.deadLetters.name, {
        last_by_subj: subjects.dlq('vm-lifecycle', 'probe-events'),
      });
      return m?.header.get('Ccm-Dlq-Subject') === PROBED('altered') ? m : undefined;
    });
    expect(parked.header.get('Ccm-Dlq-Reason')).toContain('SIGNATURE_INVALID');
    expect(parked.header.get('Ccm-Dlq-Reason')).toContain('does not verify');
    expect(handlers.consumed.length).toBe(before);
  });

  it('re-creates its durable consumer when the server loses it, and handles what comes after', async () => {
    const handlers = app.get(ProbeHandlers);
    const vm = await stack.connectAs('vm-lifecycle');
    // An operator with the bootstrap identity deletes it (no service identity may).
    const jsm = await jetstreamManager(await stack.connectAs('bootstrap'));
    const before = handlers.consumed.length;
    await jsm.consumers.delete(STREAMS.events.name, 'probe-events');
    // The durable is back on the server without anybody restarting the service...
    await pollUntil('probe-events re-created', () =>
      jsm.consumers.info(STREAMS.events.name, 'probe-events').catch(() => undefined),
    );
    // ...and a message published now reaches the handler.
    const env = sealEnvelope(await stack.identity('vm-lifecycle'), {
      natssubject: PROBED('after-loss'),
      type: 'ccm.vm.probed',
      data: { poison: false },
    });
    await jetstream(vm).publish(PROBED('after-loss'), encodeEnvelope(env), { msgID: env.id });
    await pollUntil('the handler to see the message', () => handlers.consumed.length > before, Boolean, {
      timeoutMs: 15_000,
    });
    // It resumed where it was: nothing handled before the loss came again.
    expect(handlers.consumed.slice(before)).toEqual([{ n: 1, deliveries: 1 }]);
  });
});

describe('a durable consumer the server loses and cannot give back', () => {
  let stack: TestStack;
  let app: INestApplication;
  let restarted: RunningNats | undefined;
  beforeAll(async () => {
    stack = await startTestStack({
      postgres: false,
      extraConsumers: {
        'guest-agent': [{ stream: 'events', durable: 'probe-lost', filterSubject: 'ccm.evt.vm.*.probed' }],
      },
    });
    @Injectable()
    class LostProbe {
      @OnJetStream({
        stream: 'events',
        durable: 'probe-lost',
        filterSubject: 'ccm.evt.vm.*.probed',
        schema: z.unknown(),
      })
      handle(): Promise<Outcome> {
        return Promise.resolve(ack());
      }
    }
    ({ app } = await createServiceApp(
      { service: 'guest-agent', database: false, providers: [LostProbe] },
      stack.env({ CCM_VM_ID: 'vm-1' }),
    ));
    await app.init();
  });
  afterAll(async () => {
    await app?.close();
    await restarted?.stop();
    await stack?.stop();
  });

  it('is reported lost on /health and /metrics until it can be re-created, then healthy again', async () => {
    // NATS comes back on the same port with an empty JetStream store: the stream and consumer are gone.
    const { port } = stack.nats;
    await stack.nats.stop();
    const auth = await readFile(join(stack.keysDir, NATS_AUTH_FILE), 'utf8');
    restarted = await startNatsServer({ port, extraConfig: auth });
    const registry = app.get(HandlerRegistry);
    const lost = await pollUntil(
      'probe-lost reported lost',
      async () => (await registry.consumerHealth()).find((h) => h.durable === 'probe-lost'),
      (h) => h?.lost === true && !!h.error,
      { timeoutMs: 40_000 },
    );
    expect(lost?.error).toBeTruthy();
    const metrics = await app.get<Registry>(METRICS_REGISTRY).metrics();
    expect(metrics).toMatch(/ccm_consumer_lost\{[^}]*consumer="probe-lost"[^}]*\} 1/);
    // The bootstrap restores the streams: the service re-creates its consumer by itself.
    const nc = await stack.connectAs('bootstrap');
    await ensureStreams(await jetstreamManager(nc));
    await nc.close();
    await pollUntil(
      'probe-lost re-created',
      async () => (await registry.consumerHealth()).find((h) => h.durable === 'probe-lost'),
      (h) => h?.lost === false && h.stalled === false,
      { timeoutMs: 40_000 },
    );
  });
});
