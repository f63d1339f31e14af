import { createHash, randomBytes } from 'node:crypto';
import { generateIdentityKey, sealMigrationKey } from '@ccm/sealing';
import { pollUntil, startTestStack, type TestStack } from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  guestClient,
  type GuestClient,
  type GuestProcess,
  startGuest,
  type Tamper,
  tamperingProxy,
  typedFailure as fail,
} from './__fixtures__/guests.js';

/** Two guest-agent processes (sim driver) on a real NATS; image streams over real TCP between them. */
describe('guest-to-guest container migration (sim driver)', () => {
  let stack: TestStack;
  let nc: NatsConnection;
  let g: GuestClient;
  let a: GuestProcess;
  let b: GuestProcess;
  let pubA: Buffer;
  let pubB: Buffer;
  let n = 0;

  beforeAll(async () => {
    stack = await startTestStack({ postgres: false });
    nc = await stack.connectAs('operator');
    g = await guestClient(nc, stack.keysDir);
    // 16 KiB chunks, so even a final dump of a few dirty pages spans several chunks.
    const env = { CCM_GUEST_STREAM_CHUNK_BYTES: '16384', CCM_GUEST_STREAM_TIMEOUT_MS: '10000' };
    [a, b] = await Promise.all([
      startGuest(stack, 'vm-a', g.send, env),
      startGuest(stack, 'vm-b', g.send, env),
    ]);
    pubA = Buffer.from((await g.send('vm-a', 'identity', {})).publicKey as string, 'base64');
    pubB = Buffer.from((await g.send('vm-b', 'identity', {})).publicKey as string, 'base64');
  });
  afterAll(async () => {
    await Promise.allSettled([a?.stop(), b?.stop()]);
    await nc?.close().catch(() => undefined);
    await stack?.stop();
  });

  const counter = async (vm: string, id: string) => (await g.send(vm, 'describe', { id })).counter as number;

  /** A running container on A and the migration key sealed to both guests (the key-broker's part). */
  async function prepare(pages = 2048, dirtyPagesPerSec = 400) {
    const id = `c${++n}`;
    const migrationId = `mig-test-${n}`;
    await g.send('vm-a', 'run-container', { id, pages, dirtyPagesPerSec });
    await pollUntil(
      'the container counts',
      () => counter('vm-a', id),
      (c) => c > 3,
    );
    const key = randomBytes(32);
    for (const [vm, pub] of [
      ['vm-a', pubA],
      ['vm-b', pubB],
    ] as const) {
      const sealedKey = sealMigrationKey(key, pub, { migrationId, keyId: 'mk-1' }).toString('base64');
      await g.send(vm, 'load-key', { migrationId, keyId: 'mk-1', sealedKey });
    }
    return { id, migrationId };
  }

  async function round(
    migrationId: string,
    containerId: string,
    r: number,
    verb: 'pre-dump' | 'dump',
    tamper?: Tamper,
  ) {
    const to = (await g.send('vm-b', 'receive', { migrationId, containerId, round: r })) as {
      host: string;
      port: number;
    };
    const target = tamper
      ? { host: '127.0.0.1', port: (await tamperingProxy(to, { migrationId, round: r }, tamper, 0)).port }
      : to;
    return g.send('vm-a', verb, { migrationId, containerId, round: r, target });
  }

  it('moves a counting container A → B with two pre-copy rounds; it counts on at B from where A froze', async () => {
    const { id, migrationId } = await prepare();
    const r1 = await round(migrationId, id, 1, 'pre-dump');
    const r2 = await round(migrationId, id, 2, 'pre-dump');
    const r3 = await round(migrationId, id, 3, 'dump');
    expect(r1.pages).toBe(2048);
    expect(r2.pages as number).toBeLessThan(2048);
    expect(r3.pages as number).toBeLessThan(2048);
    const frozenAt = await counter('vm-a', id);
    expect((await g.send('vm-a', 'describe', { id })).state).toBe('frozen');

    const restored = await g.send('vm-b', 'restore', { migrationId, containerId: id, rounds: 3 });
    expect(restored).toMatchObject({ state: 'restored', counter: frozenAt });
    await g.send('vm-b', 'resume', { id });
    await pollUntil(
      'B counts on',
      () => counter('vm-b', id),
      (c) => c > frozenAt + 3,
    );
    expect(await g.send('vm-a', 'kill', { id })).toMatchObject({ state: 'killed' });
    console.log(
      `[guest] rounds: ${[r1, r2, r3].map((r) => `${String(r.pages)} pages/${String(r.imageBytes)} B/${(r.durationMs as number).toFixed(0)} ms`).join(', ')}`,
    );
  });

  it('restore with resume: true restores and resumes in one command; repeated, it answers the running container', async () => {
    const { id, migrationId } = await prepare(256);
    await round(migrationId, id, 1, 'pre-dump');
    await round(migrationId, id, 2, 'dump');
    const frozenAt = await counter('vm-a', id);
    const restored = await g.send('vm-b', 'restore', {
      migrationId,
      containerId: id,
      rounds: 2,
      resume: true,
    });
    expect(restored).toMatchObject({ state: 'running', migrationId });
    expect(restored.counter as number).toBeGreaterThanOrEqual(frozenAt);
    await pollUntil(
      'B counts on',
      () => counter('vm-b', id),
      (c) => c > frozenAt + 3,
    );
    const again = await g.send('vm-b', 'restore', { migrationId, containerId: id, rounds: 2, resume: true });
    expect(again).toMatchObject({ state: 'running', migrationId });
    // one left restored by a restore without resume is resumed by the repeated command with it
    const left = await prepare(256);
    await round(left.migrationId, left.id, 1, 'dump');
    const ref = { migrationId: left.migrationId, containerId: left.id, rounds: 1 };
    expect(await g.send('vm-b', 'restore', ref)).toMatchObject({ state: 'restored' });
    expect(await g.send('vm-b', 'restore', { ...ref, resume: true })).toMatchObject({ state: 'running' });
    for (const c of [id, left.id]) {
      await g.send('vm-a', 'kill', { id: c });
      await g.send('vm-b', 'kill', { id: c });
    }
  });

  it('a repeated round answers with its first report and sends nothing again', async () => {
    const { id, migrationId } = await prepare(256);
    const to = await g.send('vm-b', 'receive', { migrationId, containerId: id, round: 1 });
    const first = await g.send('vm-a', 'pre-dump', { migrationId, containerId: id, round: 1, target: to });
    const again = await g.send('vm-a', 'pre-dump', { migrationId, containerId: id, round: 1, target: to });
    expect(again).toEqual(first);
    await g.send('vm-a', 'kill', { id });
  });

  it.each(['alter', 'drop', 'replay', 'reorder'] as const)(
    'a %s chunk in the final dump: restore refused, source thawed and counting, the failure names the chunk',
    async (tamper) => {
      const { id, migrationId } = await prepare(1024, 2000);
      await round(migrationId, id, 1, 'pre-dump');
      // The final dump must span several chunks (the tamper acts on chunks 0 and 1): let the workload
      // dirty pages for two ticks first, or a fast machine dumps one chunk and nothing is tampered.
      const c0 = await counter('vm-a', id);
      await pollUntil(
        'A dirties pages after round 1',
        () => counter('vm-a', id),
        (c) => c >= c0 + 2,
      );
      const err = await fail(round(migrationId, id, 2, 'dump', tamper));
      expect(err.code).toBe('STREAM_REFUSED');
      const chunk = err.details?.chunk as { round: number; expectedSeq: number; seq?: number };
      expect(chunk).toMatchObject({ round: 2, expectedSeq: tamper === 'replay' ? 1 : 0 });
      expect(err.details?.sealing).toBe(
        {
          alter: 'CHUNK_AUTH_FAILED',
          drop: 'CHUNK_OUT_OF_ORDER',
          replay: 'CHUNK_REPLAYED',
          reorder: 'CHUNK_OUT_OF_ORDER',
        }[tamper],
      );
      const refused = await fail(g.send('vm-b', 'restore', { migrationId, containerId: id, rounds: 2 }));
      expect(refused).toMatchObject({ code: 'IMAGES_INCOMPLETE', details: { round: 2, status: 'refused' } });
      const frozen = await counter('vm-a', id);
      expect(await g.send('vm-a', 'thaw', { id })).toMatchObject({ state: 'running' });
      await pollUntil(
        'A counts on after the thaw',
        () => counter('vm-a', id),
        (c) => c > frozen + 3,
      );
      await g.send('vm-b', 'discard', { migrationId });
      await g.send('vm-a', 'kill', { id });
    },
  );

  it('the stream cut mid-way: the source is told (retryable), its container runs on, the retry sends every page', async () => {
    const { id, migrationId } = await prepare(1024);
    const err = await fail(round(migrationId, id, 1, 'pre-dump', 'cut'));
    expect(err).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    // the cut round's pages stayed dirty: its retry carries all of them, not just those dirtied since
    expect((await round(migrationId, id, 1, 'pre-dump')).pages).toBe(1024);
    const c = await counter('vm-a', id);
    await pollUntil(
      'A runs on',
      () => counter('vm-a', id),
      (x) => x > c + 2,
    );
    await g.send('vm-a', 'kill', { id });
  });

  it('refuses bad input to every command with a typed error and loses nothing', async () => {
    await g.send('vm-a', 'run-container', { id: 'keep', pages: 16, dirtyPagesPerSec: 0 });
    // A container with a network: the same request again is the same container, not a conflict.
    const net = {
      id: 'keep-net',
      pages: 16,
      dirtyPagesPerSec: 0,
      network: { address: '10.218.0.9', port: 80 },
    };
    for (let i = 0; i < 2; i++) await g.send('vm-a', 'run-container', net);
    const bad: Array<[string, unknown, string]> = [
      ['run-container', { id: 'x', pages: 0, dirtyPagesPerSec: 1 }, 'VALIDATION_FAILED'],
      ['run-container', { id: '../etc', pages: 1, dirtyPagesPerSec: 1 }, 'VALIDATION_FAILED'],
      ...[
        { address: '10.218.0.300', port: 80 },
        { address: '127.0.0.1', port: 80 },
        { address: '224.0.0.5', port: 80 },
        { address: '10.218.0.0', port: 80 },
        { address: '10.218.0.5; rm -rf /', port: 80 },
        { address: '10.218.0.5', port: 0 },
        { address: '10.218.0.5', port: 65_536 },
        { address: '10.218.0.5' },
      ].map((network): [string, unknown, string] => [
        'run-container',
        { id: 'net', pages: 1, dirtyPagesPerSec: 1, network },
        'VALIDATION_FAILED',
      ]),
      [
        'run-container',
        { id: 'keep', pages: 16, dirtyPagesPerSec: 0, network: { address: '10.218.0.5', port: 80 } },
        'CONFLICT',
      ],
      ['load-key', { migrationId: 'm', keyId: 'k', sealedKey: 'not base64!' }, 'VALIDATION_FAILED'],
      [
        'load-key',
        { migrationId: 'm', keyId: 'k', sealedKey: randomBytes(100).toString('base64') },
        'KEY_UNSEAL_FAILED',
      ],
      ['receive', { migrationId: 'm', containerId: 'keep', round: 0 }, 'VALIDATION_FAILED'],
      ['receive', { migrationId: 'm-nokey', containerId: 'keep', round: 1 }, 'NO_MIGRATION_KEY'],
      [
        'pre-dump',
        { migrationId: 'm', containerId: 'keep', round: 1, target: { host: 'h', port: 70000 } },
        'VALIDATION_FAILED',
      ],
      [
        'pre-dump',
        { migrationId: 'm-nokey', containerId: 'keep', round: 1, target: { host: '127.0.0.1', port: 9 } },
        'NO_MIGRATION_KEY',
      ],
      ['dump', { migrationId: 'm', containerId: 'keep' }, 'VALIDATION_FAILED'],
      ['restore', { migrationId: 'm', containerId: 'keep', rounds: 1 }, 'BAD_CONTAINER_STATE'],
      ['restore', { migrationId: 'm', containerId: 'none', rounds: 1 }, 'IMAGES_INCOMPLETE'],
      ['restore', { migrationId: 'm', containerId: 'none', rounds: 1, resume: 'yes' }, 'VALIDATION_FAILED'],
      ['resume', { id: 'none' }, 'NOT_FOUND'],
      ['thaw', { id: 'none' }, 'NOT_FOUND'],
      ['kill', { id: 42 }, 'VALIDATION_FAILED'],
      ['discard', {}, 'VALIDATION_FAILED'],
      ['describe', { id: 'none' }, 'NOT_FOUND'],
    ];
    const seen = [];
    for (const [verb, data, code] of bad) {
      const e = await fail(g.send('vm-a', verb, data));
      seen.push(`${verb}:${e.code}`);
      expect(`${verb}:${e.code}`).toBe(`${verb}:${code}`);
      expect(e.code).not.toBe('INTERNAL');
    }
    // a key sealed to B does not open in A
    const sealedKey = sealMigrationKey(randomBytes(32), pubB, { migrationId: 'm-b', keyId: 'k' }).toString(
      'base64',
    );
    expect((await fail(g.send('vm-a', 'load-key', { migrationId: 'm-b', keyId: 'k', sealedKey }))).code).toBe(
      'KEY_UNSEAL_FAILED',
    );
    expect((await g.send('vm-a', 'describe', { id: 'keep' })).state).toBe('running');
  });

  it('load-secret: the key-broker’s workload secret sealed to this guest opens here only, and only the key-broker may send it', async () => {
    const broker = await guestClient(nc, stack.keysDir, 'key-broker');
    const secret = randomBytes(32);
    const binding = { migrationId: 'm-secret', keyId: 'ws-1' };
    const req = (pub: Buffer) => ({
      workloadId: 'web-1',
      migrationId: binding.migrationId,
      secretId: binding.keyId,
      generation: 1,
      sealed: sealMigrationKey(secret, pub, binding).toString('base64'),
    });
    expect(await broker.send('vm-a', 'load-secret', req(pubA))).toEqual({
      secretId: 'ws-1',
      generation: 1,
      sha256: createHash('sha256').update(secret).digest('hex'),
    });
    expect((await fail(broker.send('vm-a', 'load-secret', req(pubB)))).code).toBe('KEY_UNSEAL_FAILED');
    expect((await fail(broker.send('vm-a', 'load-secret', { ...req(pubA), generation: 0 }))).code).toBe(
      'VALIDATION_FAILED',
    );
    // Bound to its migration and id: moved to another, it does not open.
    expect((await fail(broker.send('vm-a', 'load-secret', { ...req(pubA), secretId: 'ws-2' }))).code).toBe(
      'KEY_UNSEAL_FAILED',
    );
    for (const signer of ['operator', 'container-checkpoint'] as const) {
      const other = await guestClient(nc, stack.keysDir, signer);
      expect((await fail(other.send('vm-a', 'load-secret', req(pubA)))).code, signer).toBe('UNAUTHORIZED');
    }
  });

  it('a compromised service identity may not drive a guest', async () => {
    const attacker = await guestClient(nc, stack.keysDir, 'operator');
    // network-overlay may call guests (CALLS) but not their checkpoint verbs: sign as it over the operator's connection.
    const overlay = await guestClient(nc, stack.keysDir, 'network-overlay');
    await attacker.send('vm-a', 'run-container', { id: 'victim', pages: 16, dirtyPagesPerSec: 0 });
    for (const verb of ['kill', 'thaw', 'describe']) {
      expect((await fail(overlay.send('vm-a', verb, { id: 'victim' }))).code).toBe('UNAUTHORIZED');
    }
    const unsealable = generateIdentityKey();
    const sealedKey = sealMigrationKey(randomBytes(32), unsealable.publicKey, {
      migrationId: 'm-x',
      keyId: 'k',
    });
    expect(
      (
        await fail(
          overlay.send('vm-a', 'load-key', {
            migrationId: 'm-x',
            keyId: 'k',
            sealedKey: sealedKey.toString('base64'),
          }),
        )
      ).code,
    ).toBe('UNAUTHORIZED');
    expect((await g.send('vm-a', 'describe', { id: 'victim' })).state).toBe('running');
  });
});
