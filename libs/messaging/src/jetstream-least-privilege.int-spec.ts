import { BOOTSTRAP, inboxPrefix, OPERATOR, STREAMS, type IdentityName } from '@ccm/contracts';
import { RawNatsClient, RawNatsError, startTestStack, type TestStack } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Regressions of issue 8: every identity could write the JetStream API of every stream. Probed as an
 * attacker would, with the raw protocol client holding a compromised service's NKEY.
 */
describe('JetStream least privilege (probed with a raw NATS client)', () => {
  let stack: TestStack;
  const clients: RawNatsClient[] = [];
  const as = async (identity: IdentityName, scope?: string): Promise<RawNatsClient> => {
    const c = await RawNatsClient.connect({
      port: stack.nats.port,
      seed: (await stack.identity(identity, scope)).natsSeed,
      inboxPrefix: inboxPrefix(identity),
    });
    clients.push(c);
    return c;
  };
  /** The API call's outcome: the server's permission refusal, or its JSON answer. */
  const api = async (c: RawNatsClient, call: string, body: unknown = {}) =>
    c.jsApi(call, body, 3_000).then(
      (r) => ({ refused: false as const, reply: r }),
      (e: unknown) => {
        if (!(e instanceof RawNatsError)) throw e;
        return { refused: true as const, error: e.message };
      },
    );
  const eventCount = async () => {
    const info = await (await as(OPERATOR)).jsApi(`STREAM.INFO.${STREAMS.events.name}`);
    return (info['state'] as { messages: number }).messages;
  };

  beforeAll(async () => {
    stack = await startTestStack({ postgres: false });
    const overlay = await as('network-overlay');
    for (let i = 0; i < 20; i++) overlay.publish(`ccm.evt.overlay.o1.e${i}`, `{"n":${i}}`);
    expect(await overlay.ping()).toEqual({ ok: true });
    const coordinator = await as('saga-coordinator');
    const created = await api(
      coordinator,
      `CONSUMER.CREATE.${STREAMS.requests.name}.migrate-intake.ccm.req.migrate`,
      {
        stream_name: STREAMS.requests.name,
        config: { durable_name: 'migrate-intake', filter_subject: 'ccm.req.migrate', ack_policy: 'explicit' },
      },
    );
    expect(created).toMatchObject({ refused: false, reply: { name: 'migrate-intake' } });
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await stack?.stop();
  });

  it('a service cannot truncate the audit log with STREAM.UPDATE max_msgs', async () => {
    const before = await eventCount();
    expect(before).toBeGreaterThanOrEqual(20);
    const overlay = await as('network-overlay');
    const r = await api(overlay, `STREAM.UPDATE.${STREAMS.events.name}`, {
      name: STREAMS.events.name,
      subjects: ['ccm.evt.>'],
      max_msgs: 5,
    });
    expect(r).toMatchObject({ refused: true, error: expect.stringMatching(/Permissions Violation/) });
    expect(await eventCount()).toBe(before);
  });

  it('no service may create, delete or purge a stream or delete a message', async () => {
    const c = await as('saga-coordinator');
    for (const call of [
      `STREAM.CREATE.${STREAMS.events.name}`,
      `STREAM.DELETE.${STREAMS.events.name}`,
      `STREAM.PURGE.${STREAMS.events.name}`,
      `STREAM.MSG.DELETE.${STREAMS.events.name}`,
      `STREAM.DELETE.${STREAMS.requests.name}`,
    ])
      expect(await api(c, call, { seq: 1 }), call).toMatchObject({ refused: true });
  });

  it('the audit log denies deleting and purging messages even to an identity that may update it', async () => {
    const info = await (await as(BOOTSTRAP)).jsApi(`STREAM.INFO.${STREAMS.events.name}`);
    expect(info['config']).toMatchObject({ deny_delete: true, deny_purge: true });
    const op = await as(OPERATOR);
    expect(await api(op, `STREAM.PURGE.${STREAMS.events.name}`)).toMatchObject({ refused: true });
  });

  it('a service cannot delete the coordinator’s migrate-intake consumer', async () => {
    const overlay = await as('network-overlay');
    const r = await api(overlay, `CONSUMER.DELETE.${STREAMS.requests.name}.migrate-intake`);
    expect(r).toMatchObject({ refused: true });
    const still = await (await as(BOOTSTRAP)).jsApi(`CONSUMER.INFO.${STREAMS.requests.name}.migrate-intake`);
    expect(still['name']).toBe('migrate-intake');
  });

  it('a service cannot read the operator’s pending requests or others’ events by sequence', async () => {
    const overlay = await as('network-overlay');
    for (const stream of Object.values(STREAMS).map((s) => s.name)) {
      expect(await api(overlay, `STREAM.MSG.GET.${stream}`, { seq: 1 }), stream).toMatchObject({
        refused: true,
      });
      expect(await api(overlay, `DIRECT.GET.${stream}`, { seq: 1 }), stream).toMatchObject({ refused: true });
    }
  });

  it('a service cannot create a consumer of its own on a stream to read it', async () => {
    const overlay = await as('network-overlay');
    const spy = {
      stream_name: STREAMS.events.name,
      config: { durable_name: 'spy', filter_subject: 'ccm.evt.>', ack_policy: 'none' },
    };
    expect(await api(overlay, `CONSUMER.CREATE.${STREAMS.events.name}.spy.ccm.evt.>`, spy)).toMatchObject({
      refused: true,
    });
    expect(await api(overlay, `CONSUMER.DURABLE.CREATE.${STREAMS.events.name}.spy`, spy)).toMatchObject({
      refused: true,
    });
    expect(await api(overlay, `CONSUMER.CREATE.${STREAMS.events.name}`, spy)).toMatchObject({
      refused: true,
    });
  });

  it('the coordinator may bind its own consumers only with their own filters', async () => {
    const c = await as('saga-coordinator');
    const widened = {
      stream_name: STREAMS.events.name,
      config: { durable_name: 'progress-transfer', filter_subject: 'ccm.evt.>', ack_policy: 'explicit' },
    };
    expect(
      await api(c, `CONSUMER.CREATE.${STREAMS.events.name}.progress-transfer.ccm.evt.>`, widened),
    ).toMatchObject({ refused: true });
    // The filter in the subject must be the config's: the server refuses a mismatch.
    const mismatch = await api(
      c,
      `CONSUMER.CREATE.${STREAMS.events.name}.progress-transfer.ccm.evt.transfer.*.progressed`,
      widened,
    );
    expect(mismatch.refused ? mismatch : mismatch.reply['error']).toBeTruthy();
    const other = await api(c, `CONSUMER.INFO.${STREAMS.requests.name}.cancel-intake-spy`);
    expect(other).toMatchObject({ refused: true });
  });

  it('only the bootstrap identity may change a stream', async () => {
    const b = await as(BOOTSTRAP);
    const info = await b.jsApi(`STREAM.INFO.${STREAMS.deadLetters.name}`);
    const r = await api(b, `STREAM.UPDATE.${STREAMS.deadLetters.name}`, info['config']);
    expect(r).toMatchObject({ refused: false, reply: { config: { name: STREAMS.deadLetters.name } } });
  });
});
