import {
  type CcmError,
  eventHash,
  OVERLAY_EVENTS,
  STREAMS,
  type Envelope,
  type OverlayEventName,
} from '@ccm/contracts';
import { openEnvelope } from '@ccm/messaging';
import { pollUntil } from '@ccm/testing';
import { DeliverPolicy, jetstream, type ConsumerMessages } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimOverlayDriver } from '../driver/sim-driver.js';
import { OverlayFixture } from '../testing/overlay-fixture.js';

type Seen = { subject: string; env: Envelope<Record<string, unknown>> };

/**
 * The overlay's signed events on a real nats-server and Postgres: admission, cut-over, its revert and
 * revocation each write one event through the outbox, those of a saga step on the migration's hash
 * chain with the move's figures; refusals write none; no other identity may publish them.
 */
describe('network-overlay events', () => {
  let f: OverlayFixture;
  let messages: ConsumerMessages;
  const seen: Seen[] = [];
  const keys = { a: OverlayFixture.newKey(), b: OverlayFixture.newKey(), c: OverlayFixture.newKey() };
  const named = (name: OverlayEventName) => seen.filter((s) => s.subject.endsWith(`.${name}`));
  const waitFor = (name: OverlayEventName, n: number) =>
    pollUntil(
      `${n} ${name} event(s)`,
      () => named(name).length,
      (k) => k >= n,
      { timeoutMs: 10_000 },
    );

  beforeAll(async () => {
    f = await OverlayFixture.start(new SimOverlayDriver());
    const nc = await f.stack.connectAs('operator');
    const consumer = await jetstream(nc).consumers.get(STREAMS.events.name, {
      filter_subjects: 'ccm.evt.overlay.>',
      deliver_policy: DeliverPolicy.All,
    });
    messages = await consumer.consume();
    void (async () => {
      for await (const m of messages) {
        const name = m.subject.split('.').at(-1) as OverlayEventName;
        const env = openEnvelope(m.data, f.trust, OVERLAY_EVENTS[name], { subject: m.subject });
        seen.push({ subject: m.subject, env: env });
      }
    })();
    await f.send('operator', 'create-overlay', { overlayId: 'ev', cidr: '10.66.0.0/24' });
  }, 120_000);
  afterAll(async () => {
    await messages?.close();
    await f?.stop();
  });

  it('publishes peer-admitted, signed by the overlay, once per admission', async () => {
    for (const vm of ['a', 'b'] as const) {
      await f.send('operator', 'admit-peer', { overlayId: 'ev', admission: await f.admission(vm, keys[vm]) });
    }
    // The same key again is no change: no second event.
    await f.send('operator', 'admit-peer', { overlayId: 'ev', admission: await f.admission('a', keys.a) });
    await waitFor('peer-admitted', 2);
    const admitted = named('peer-admitted');
    expect(
      admitted.map((s) => [s.subject, s.env.source, s.env.data['vmId'], s.env.data['publicKey']]),
    ).toEqual([
      ['ccm.evt.overlay.ev.peer-admitted', 'network-overlay', 'a', keys.a],
      ['ccm.evt.overlay.ev.peer-admitted', 'network-overlay', 'b', keys.b],
    ]);
    expect(admitted[0].env.correlationid).toBeUndefined();
  });

  it('puts cut-over and its revert, with the brownout, on the migration hash chain, once each', async () => {
    await f.send('operator', 'assign-workload', { overlayId: 'ev', workloadId: 'w-ev', vmId: 'a', port: 80 });
    const join = f.step('add-peer', 'm-ev', 'w-ev', {
      targetVmId: 'c',
      overlayAdmission: await f.admission('c', keys.c),
    });
    await f.send('saga-coordinator', 'add-peer', join);
    const cmd = f.step('cut-over', 'm-ev', 'w-ev', { targetVmId: 'c' });
    const cut = (await f.send('saga-coordinator', 'cut-over', cmd)) as Record<string, unknown>;
    expect(cut['brownoutMs']).toEqual(expect.any(Number));
    // A retry (new attempt, new idempotency key) finds the move done and publishes nothing more.
    await f.send('saga-coordinator', 'cut-over', { ...cmd, attempt: 2 });
    const back = (await f.send(
      'saga-coordinator',
      'revert-cut-over',
      f.step('cut-over', 'm-ev', 'w-ev', { targetVmId: 'c' }, 'compensation'),
    )) as { revert: Record<string, unknown> };
    await waitFor('cut-over-reverted', 1);
    await waitFor('peer-admitted', 3);

    const joined = named('peer-admitted')[2].env;
    const [done] = named('cut-over-done');
    const [reverted] = named('cut-over-reverted');
    expect(named('cut-over-done')).toHaveLength(1);
    expect(joined).toMatchObject({ correlationid: 'm-ev', data: { vmId: 'c', migrationId: 'm-ev' } });
    expect(done.env).toMatchObject({
      correlationid: 'm-ev',
      data: {
        migrationId: 'm-ev',
        workloadId: 'w-ev',
        from: 'a',
        to: 'c',
        brownoutMs: cut['brownoutMs'],
        cutOverMs: cut['cutOverMs'],
        peersUpdated: 3,
      },
    });
    expect(reverted.env.data).toMatchObject({ from: 'c', to: 'a', brownoutMs: back.revert['brownoutMs'] });
    // One chain for the overlay's events about m-ev, each linked to the one before.
    const chain = [joined, done.env, reverted.env];
    expect(new Set(chain.map((e) => e.chainid)).size).toBe(1);
    expect(chain.map((e) => e.chainseq)).toEqual([1, 2, 3]);
    expect(chain[1].chainprev).toBe(eventHash(chain[0]));
    expect(chain[2].chainprev).toBe(eventHash(chain[1]));
  });

  it('publishes peer-revoked for each overlay a revoked guest leaves, and nothing for a refusal', async () => {
    await f.send('operator', 'revoke-peer', { vmId: 'b', reason: 'evidence revoked' });
    await waitFor('peer-revoked', 1);
    expect(named('peer-revoked')[0].env.data).toMatchObject({
      overlayId: 'ev',
      vmId: 'b',
      reason: 'evidence revoked',
    });
    const before = seen.length;
    const refused = await f.send('operator', 'admit-peer', {
      overlayId: 'ev',
      admission: await f.admission('b', keys.b),
    });
    expect((refused as CcmError).code).toBe('REFUSED');
    const forged = await f.send('operator', 'admit-peer', {
      overlayId: 'ev',
      admission: await f.admission('x', OverlayFixture.newKey(), { signer: 'saga-coordinator' }),
    });
    expect((forged as CcmError).code).toBe('REFUSED');
    // A later event shows the relay has passed the refusals: none of them wrote one.
    await f.send('operator', 'admit-peer', {
      overlayId: 'ev',
      admission: await f.admission('d', OverlayFixture.newKey()),
    });
    await waitFor('peer-admitted', 4);
    expect(seen.slice(before).map((s) => [s.subject.split('.').at(-1), s.env.data['vmId']])).toEqual([
      ['peer-admitted', 'd'],
    ]);
  });

  it('refuses an overlay event published by a compromised coordinator', async () => {
    const nc = await f.stack.connectAs('saga-coordinator');
    try {
      await expect(
        jetstream(nc).publish('ccm.evt.overlay.ev.cut-over-done', '{}', { timeout: 2_000 }),
      ).rejects.toThrow();
    } finally {
      await nc.close();
    }
    expect(seen.filter((s) => s.env.source !== 'network-overlay')).toEqual([]);
  });
});
