import { sign } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { canonicalJson, OPERATOR, SIGNING_CONTEXT_V1, subjects, type Envelope } from '@ccm/contracts';
import { loadTrustStore, type Identity, type TrustStore } from '@ccm/keys';
import {
  ask,
  bytesOf,
  codeOf,
  deadLetters,
  pollUntil,
  publishToStream,
  rawAs,
  sealed,
  startTestStack,
  type RawNatsClient,
  type TestStack,
} from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBE_HOST, startEveryService, type EveryService } from './support/every-service.js';

/** Mutations of an envelope's JSON text that once came back INTERNAL: name, mutation, typed code. */
const BAD_INPUTS: Array<[string, (json: string) => string | Buffer, string]> = [
  ['a NUL in a string', (j) => j.replace('MARK', 'MA\\u0000RK'), 'VALIDATION_FAILED'],
  ['a NUL in a key', (j) => j.replace('{"', '{"a\\u0000b":1,"'), 'VALIDATION_FAILED'],
  ['a lone high surrogate', (j) => j.replace('MARK', 'MA\\ud800RK'), 'VALIDATION_FAILED'],
  ['a lone low surrogate', (j) => j.replace('MARK', '\\udc00'), 'VALIDATION_FAILED'],
  ['the number 1e400', (j) => j.replace('"MARK"', '1e400'), 'VALIDATION_FAILED'],
  ['the number -1e400', (j) => j.replace('{"', '{"n":-1e400,"'), 'VALIDATION_FAILED'],
  [
    'nesting 10,000 deep',
    (j) => j.replace('"MARK"', '['.repeat(10_000) + ']'.repeat(10_000)),
    'MALFORMED_MESSAGE',
  ],
  [
    'bytes that are not UTF-8',
    (j) => Buffer.concat([Buffer.from(j.slice(0, 20)), Buffer.from([0xff, 0xfe]), Buffer.from(j.slice(20))]),
    'MALFORMED_MESSAGE',
  ],
];

/**
 * Issue 8's probes, each a regression test named after what broke: sent as an outsider would, with
 * the raw NATS protocol client and an identity's own NKEY and signing key, against every service
 * running on a real nats-server and Postgres.
 */
describe('envelopes that are replayed, misaddressed, stale or malformed are refused with a typed error', () => {
  let stack: TestStack;
  let services: EveryService;
  let trust: TrustStore;
  let operator: Identity;
  let op: RawNatsClient;

  const PING_KB = subjects.cmd('key-broker', 'ping');
  const PING_VM = subjects.cmd('vm-lifecycle', 'ping');
  const LIST = subjects.cmd('saga-coordinator', 'list-migrations');
  const MIGRATE = subjects.req('migrate');
  const INTAKE_DLQ = subjects.dlq('saga-coordinator', 'migrate-intake');

  beforeAll(async () => {
    stack = await startTestStack({ hostIds: [PROBE_HOST] });
    services = await startEveryService(stack);
    trust = await loadTrustStore(stack.keysDir);
    operator = await stack.identity(OPERATOR);
    op = await rawAs(stack, OPERATOR);
  });
  afterAll(async () => {
    op?.close();
    await services?.close();
    await stack?.stop();
  });

  const migrateRequest = (workload: string) => ({ workload, sourceHost: 'host-a', targetHost: 'host-b' });

  /** Publishes to intake and waits for its dead-letter copy (found by stream seq). */
  async function parkedAtIntake(payload: Uint8Array | string, msgId?: string) {
    const { seq } = await publishToStream(op, MIGRATE, payload, msgId);
    return pollUntil(`intake message #${seq} parked`, async () =>
      (await deadLetters(op, INTAKE_DLQ)).find((d) => d.headers['Ccm-Dlq-Stream-Seq'] === String(seq)),
    );
  }

  async function migrationsOf(workload: string): Promise<unknown[]> {
    const { reply } = await ask(op, trust, LIST, bytesOf(sealed(operator, LIST, { limit: 500 })));
    if (!reply.ok) throw new Error(`list-migrations failed: ${reply.error.code}`);
    return (reply.result as { items: Array<{ workload: string }> }).items.filter(
      (m) => m.workload === workload,
    );
  }

  describe('requests', () => {
    it('the same envelope sent twice: the repeat is refused as REPLAYED', async () => {
      const env = bytesOf(sealed(operator, PING_KB, { message: 'once' }));
      expect(codeOf((await ask(op, trust, PING_KB, env)).reply)).toBe('ok');
      const again = (await ask(op, trust, PING_KB, env)).reply;
      expect(again).toMatchObject({ ok: false, error: { code: 'REPLAYED', retryable: false } });
    });

    it.each([
      ['2000', new Date('2000-01-01T00:00:00Z')],
      ['2099', new Date('2099-01-01T00:00:00Z')],
    ])('an envelope dated %s is refused as STALE', async (_year, time) => {
      const { reply } = await ask(
        op,
        trust,
        PING_KB,
        bytesOf(sealed(operator, PING_KB, { message: 'x' }, { time })),
      );
      expect(reply).toMatchObject({ ok: false, error: { code: 'STALE', retryable: false } });
    });

    it('a key-broker ping envelope sent to vm-lifecycle is refused as MISADDRESSED', async () => {
      const env = sealed(operator, PING_KB, { message: 'redirected' });
      const { reply, envelope } = await ask(op, trust, PING_VM, bytesOf(env));
      expect(envelope.source).toBe('vm-lifecycle');
      expect(reply).toMatchObject({ ok: false, error: { code: 'MISADDRESSED', retryable: false } });
    });

    it('an envelope signed for the right subject with a key-broker ping type is refused as MISADDRESSED', async () => {
      const env = sealed(operator, PING_VM, { message: 'typed' }, { type: PING_KB });
      expect((await ask(op, trust, PING_VM, bytesOf(env))).reply).toMatchObject({
        ok: false,
        error: { code: 'MISADDRESSED' },
      });
    });

    it('a version 1 envelope, signed without a subject, is refused', async () => {
      const { natssubject: _drop, signature: _s, ...rest } = sealed(operator, PING_KB, { message: 'v1' });
      const v1 = { ...rest, signature: signV1(operator, rest) };
      expect((await ask(op, trust, PING_KB, JSON.stringify(v1))).reply).toMatchObject({
        ok: false,
        error: { code: 'MISADDRESSED' },
      });
    });

    it.each(BAD_INPUTS)('%s gets a typed error, not INTERNAL', async (_what, mutate, code) => {
      const text = mutate(JSON.stringify(sealed(operator, PING_KB, { message: 'MARK' })));
      const { reply } = await ask(op, trust, PING_KB, text);
      expect(reply).toMatchObject({ ok: false, error: { code, retryable: false } });
    });

    it.each([['c' + '9'.repeat(40)], ['c9999999999999999999']])(
      'a list cursor of %s gets VALIDATION_FAILED, not INTERNAL',
      async (cursor) => {
        const { reply } = await ask(op, trust, LIST, bytesOf(sealed(operator, LIST, { cursor })));
        expect(reply).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED', retryable: false } });
      },
    );
  });

  describe('intake', () => {
    it('an envelope of type ccm.cmd.key-broker.ping is parked as MISADDRESSED and creates no migration', async () => {
      const env = sealed(operator, MIGRATE, migrateRequest('typed-as-ping'), { type: PING_KB });
      const parked = await parkedAtIntake(bytesOf(env), env.id);
      expect(parked.headers['Ccm-Dlq-Reason']).toMatch(/^MISADDRESSED/);
      expect(parked.headers['Ccm-Dlq-Deliveries']).toBe('1');
      expect(await migrationsOf('typed-as-ping')).toEqual([]);
    });

    it('a request dated 2001 is parked as STALE and creates no migration', async () => {
      const env = sealed(operator, MIGRATE, migrateRequest('dated-2001'), { time: new Date('2001-01-01Z') });
      const parked = await parkedAtIntake(bytesOf(env), env.id);
      expect(parked.headers['Ccm-Dlq-Reason']).toMatch(/^STALE/);
      expect(await migrationsOf('dated-2001')).toEqual([]);
    });

    it('a request published again under another Nats-Msg-Id is parked as REPLAYED', async () => {
      const env = sealed(operator, MIGRATE, migrateRequest('replayed'), { idempotencykey: randomUUID() });
      await publishToStream(op, MIGRATE, bytesOf(env), env.id);
      await pollUntil(
        'the first copy to make a migration',
        () => migrationsOf('replayed'),
        (m) => m.length === 1,
      );
      const parked = await parkedAtIntake(bytesOf(env), randomUUID());
      expect(parked.headers['Ccm-Dlq-Reason']).toMatch(/^REPLAYED/);
      // The server's duplicate window drops the same envelope under its own id outright.
      expect(await publishToStream(op, MIGRATE, bytesOf(env), env.id)).toMatchObject({ duplicate: true });
      expect(await migrationsOf('replayed')).toHaveLength(1);
    });

    it('a request signed for ccm.req.cancel and published on ccm.req.migrate is parked as MISADDRESSED', async () => {
      const cancel = subjects.req('cancel');
      const env = sealed(operator, cancel, migrateRequest('cross-posted'), { type: MIGRATE });
      const parked = await parkedAtIntake(bytesOf(env), env.id);
      expect(parked.headers['Ccm-Dlq-Reason']).toMatch(/^MISADDRESSED/);
    });

    it.each(BAD_INPUTS)(
      '%s is parked at once with its typed reason, not retried as handler failed',
      async (_w, mutate, code) => {
        const env = sealed(operator, MIGRATE, migrateRequest('MARK'));
        const parked = await parkedAtIntake(mutate(JSON.stringify(env)), env.id);
        expect(parked.headers['Ccm-Dlq-Reason']).toMatch(new RegExp(`^${code}`));
        expect(parked.headers['Ccm-Dlq-Deliveries']).toBe('1');
      },
    );

    it('a message near max_payload is parked, in parts that add up to the original', async () => {
      const max = Number(op.info['max_payload']);
      const body = JSON.stringify({ filler: 'x'.repeat(max - 200) });
      const { seq } = await publishToStream(op, MIGRATE, body, randomUUID());
      const parts = await pollUntil(
        `the parts of #${seq} in CCM_DLQ`,
        async () =>
          (await deadLetters(op, INTAKE_DLQ)).filter((d) => d.headers['Ccm-Dlq-Stream-Seq'] === String(seq)),
        (ps) => ps.length > 0 && ps.length === Number(ps[0].headers['Ccm-Dlq-Part']?.split('/')[1] ?? 1),
      );
      expect(parts.length).toBeGreaterThan(1);
      expect(parts[0].headers['Ccm-Dlq-Original-Bytes']).toBe(String(body.length));
      expect(Buffer.concat(parts.map((p) => p.data)).toString()).toBe(body);
    });
  });

  describe('HTTP', () => {
    it.each([
      ['cursor=c9999999999999999999'],
      [`cursor=c${'9'.repeat(40)}`],
      ['limit=1e400'],
      ['cursor=c1&cursor=c2'],
      ['phase[x]=1'],
    ])('GET /migrations?%s answers a typed 400, not 500', async (query) => {
      const port = services.apps.get('saga-coordinator')!.httpPort;
      const res = await fetch(`http://127.0.0.1:${port}/migrations?${query}`);
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: { code: 'VALIDATION_FAILED', retryable: false } });
    });
  });

  it('every service is still healthy', async () => {
    expect(Object.values(await services.health())).toEqual([...services.apps.keys()].map(() => 200));
  });
});

/** Signs an envelope the way version 1 did: no subject under the signature. */
function signV1(identity: Identity, env: Omit<Envelope, 'signature'>): string {
  return sign(
    null,
    Buffer.from(SIGNING_CONTEXT_V1 + canonicalJson(env), 'utf8'),
    identity.signingKey,
  ).toString('base64');
}
