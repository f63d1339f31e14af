import { createUser } from '@nats-io/nkeys';
import { inboxPrefix, OPERATOR } from '@ccm/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawNatsClient } from './raw-nats.js';
import { startTestStack, type TestStack } from './stack.js';

describe('the raw-protocol probe client against a CCM nats-server', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({ postgres: false });
  }, 60_000);
  afterAll(async () => stack?.stop());

  const port = () => Number(new URL(stack.nats.url).port);
  const as = async (signer: Parameters<TestStack['identity']>[0]) =>
    RawNatsClient.connect({
      port: port(),
      seed: (await stack.identity(signer)).natsSeed,
      inboxPrefix: inboxPrefix(signer),
    });

  it('authenticates with an identity NKEY and refuses an unknown one', async () => {
    const ok = await as(OPERATOR);
    expect(await ok.ping()).toEqual({ ok: true });
    ok.close();
    await expect(RawNatsClient.connect({ port: port(), seed: createUser().getSeed() })).rejects.toThrow(
      /Authorization Violation/i,
    );
  });

  it('reports a publish and a subscribe the identity is not allowed', async () => {
    const c = await as('network-overlay');
    const pub = await c.publishChecked('ccm.req.migrate', '{}');
    expect(pub).toMatchObject({
      ok: false,
      error: expect.stringMatching(/Permissions Violation for Publish/),
    });
    const sub = await c.subscribeChecked('>');
    expect(sub).toMatchObject({
      ok: false,
      error: expect.stringMatching(/Permissions Violation for Subscription/),
    });
    c.close();
  });

  it('delivers to its own subscription and answers a JetStream API request', async () => {
    const c = await as(OPERATOR);
    const info = await c.jsApi('INFO');
    expect(info['type']).toBe('io.nats.jetstream.api.v1.account_info_response');
    c.close();
  });
});
