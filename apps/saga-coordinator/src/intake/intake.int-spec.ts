import { generateKeyPairSync } from 'node:crypto';
import { type INestApplication } from '@nestjs/common';
import { STREAMS, subjects } from '@ccm/contracts';
import { keyIdOf, type Identity } from '@ccm/keys';
import { encodeEnvelope, sealEnvelope } from '@ccm/messaging';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  pollUntil,
  startTestStack,
  type TestStack,
  startActors,
  newMigration,
  settled,
  type OperatorClient,
  type ScriptedParticipants,
} from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCoordinator } from '../testing/harness.js';

describe('migrate intake', () => {
  let stack: TestStack;
  const apps: INestApplication[] = [];
  let operator: OperatorClient;
  let participants: ScriptedParticipants;
  const early = newMigration();

  beforeAll(async () => {
    stack = await startTestStack({ scriptedHosts: true });
    ({ operator, participants } = await startActors(stack));
    // Published while no coordinator runs: JetStream keeps it until one does.
    await operator.migrate({ workload: 'early', sourceHost: 'host-a', targetHost: 'host-b' }, early.key);
    apps.push(await startCoordinator(stack, {}, 'replica-a'), await startCoordinator(stack, {}, 'replica-b'));
  });
  afterAll(async () => {
    await participants?.stop();
    await operator?.close();
    await Promise.all(apps.map((a) => a.close()));
    await stack?.stop();
  });

  it('a request published while no coordinator ran is carried out once one starts', async () => {
    const { detail } = await settled(operator, early.id);
    expect(detail).toMatchObject({ phase: 'Succeeded', workload: 'early', idempotencyKey: early.key });
  });

  it('the same idempotency key sent concurrently to two replicas makes one saga', async () => {
    const { key, id } = newMigration();
    const req = { workload: 'dup-concurrent', sourceHost: 'host-a', targetHost: 'host-c' };
    const ids = await Promise.all(Array.from({ length: 8 }, () => operator.migrate(req, key)));
    expect(new Set(ids)).toEqual(new Set([id]));
    const { detail, events } = await settled(operator, id);
    expect(detail.phase).toBe('Succeeded');
    expect(events.filter((e) => e.name === 'requested')).toHaveLength(1);
    expect(participants.effectsOf(id).filter((e) => e.step === 'attest-target')).toHaveLength(1);
    expect(participants.receivedFor(id).filter((c) => c.step === 'attest-target')).toHaveLength(1);
    const page = await operator.list({ host: 'host-c' });
    expect(page.items.filter((m) => m.workload === 'dup-concurrent')).toHaveLength(1);
  });

  it('the same key again after the end keeps the first migration, even with another payload', async () => {
    const { key, id } = newMigration();
    await operator.migrate({ workload: 'dup-later', sourceHost: 'host-a', targetHost: 'host-b' }, key);
    const first = await settled(operator, id);
    await operator.migrate({ workload: 'dup-later-other', sourceHost: 'host-x', targetHost: 'host-y' }, key);
    const marker = newMigration();
    await operator.migrate({ workload: 'marker', sourceHost: 'host-a', targetHost: 'host-b' }, marker.key);
    await settled(operator, marker.id);
    const again = await operator.get(id);
    expect(again).toMatchObject({ workload: 'dup-later', eventSeq: first.detail.eventSeq });
    expect((await operator.list({ host: 'host-x' })).items).toEqual([]);
  });

  it('a second migration of a workload that is migrating is rejected, saying which one holds it', async () => {
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    const first = newMigration();
    participants.plan(first.id, (c) =>
      c.step === 'attest-target' ? { kind: 'hold', until: hold } : undefined,
    );
    await operator.migrate({ workload: 'busy', sourceHost: 'host-a', targetHost: 'host-b' }, first.key);
    await pollUntil('the first to run', () => participants.receivedFor(first.id).length > 0);
    const second = newMigration();
    await operator.migrate({ workload: 'busy', sourceHost: 'host-a', targetHost: 'host-d' }, second.key);
    const { detail, events } = await settled(operator, second.id);
    expect(detail.phase).toBe('Rejected');
    expect(detail.reason).toBe(`container busy already has an active migration ${first.id}`);
    expect(events.map((e) => e.name)).toEqual(['requested', 'rejected']);
    expect(events[1].data).toMatchObject({ code: 'CONFLICT' });
    expect(participants.receivedFor(second.id)).toEqual([]);
    release();
    expect((await settled(operator, first.id)).detail.phase).toBe('Succeeded');
  });

  it('a deleted migrate-intake consumer comes back on the work-queue stream, and a request sent while it was gone is carried out', async () => {
    // Regression: the coordinator re-created it with a start sequence, which a work-queue stream
    // refuses ("consumer must be deliver all on workqueue stream"); it retried forever while healthy.
    const jsm = await jetstreamManager(await stack.connectAs('bootstrap'));
    const first = await jsm.consumers.info(STREAMS.requests.name, 'migrate-intake');
    // nats-server 2.10 can answer a delete racing the consumer's own state write with
    // "unlinkat …/obs/migrate-intake: directory not empty" (seen once in CI); delete until it is gone.
    await pollUntil(
      'migrate-intake deleted',
      async () => {
        await jsm.consumers.delete(STREAMS.requests.name, 'migrate-intake').catch(() => undefined);
        return jsm.consumers.info(STREAMS.requests.name, 'migrate-intake').then(
          (info) => info.created !== first.created,
          () => true,
        );
      },
      Boolean,
      { timeoutMs: 10_000 },
    );
    const during = newMigration();
    await operator.migrate(
      { workload: 'while-gone', sourceHost: 'host-a', targetHost: 'host-b' },
      during.key,
    );
    const back = await pollUntil(
      'migrate-intake re-created',
      () => jsm.consumers.info(STREAMS.requests.name, 'migrate-intake').catch(() => undefined),
      (info) => info !== undefined && info.created !== first.created,
      { timeoutMs: 20_000 },
    );
    expect(back?.config.deliver_policy).toBe('all');
    expect((await settled(operator, during.id)).detail).toMatchObject({
      phase: 'Succeeded',
      workload: 'while-gone',
    });
  });

  describe('requests that are not what they claim are dead-lettered with a typed reason and start nothing', () => {
    const good = { workload: 'bad', sourceHost: 'host-a', targetHost: 'host-b' };
    const cases: Array<[string, string, () => Promise<Uint8Array>]> = [
      [
        'not JSON',
        'MALFORMED_MESSAGE',
        () => Promise.resolve(new TextEncoder().encode('{"workload": "bad-1"')),
      ],
      [
        'an invalid payload',
        'VALIDATION_FAILED',
        async () =>
          seal(await stack.identity('operator'), { ...good, workload: 'bad-2', targetHost: 'host-a' }),
      ],
      [
        'an unsigned envelope',
        'SIGNATURE_MISSING',
        async () => {
          const env = sealEnvelope(await stack.identity('operator'), {
            natssubject: subjects.req('migrate'),
            type: subjects.req('migrate'),
            data: { ...good, workload: 'bad-3' },
          });
          return encodeEnvelope({ ...env, signature: undefined, signerkey: undefined });
        },
      ],
      [
        'a tampered envelope',
        'SIGNATURE_INVALID',
        async () => {
          const env = sealEnvelope(await stack.identity('operator'), {
            natssubject: subjects.req('migrate'),
            type: subjects.req('migrate'),
            data: { ...good, workload: 'bad-4' },
          });
          return encodeEnvelope({ ...env, data: { ...good, workload: 'bad-4', targetHost: 'host-z' } });
        },
      ],
      [
        'a request signed by a service, not an operator',
        'UNAUTHORIZED',
        async () => seal(await stack.identity('key-broker'), { ...good, workload: 'bad-5' }),
      ],
      [
        'a key nobody trusts',
        'UNKNOWN_SIGNER',
        () => {
          const { privateKey, publicKey } = generateKeyPairSync('ed25519');
          const stranger = {
            name: 'operator',
            signingKey: privateKey,
            keyId: keyIdOf(publicKey),
          } as Identity;
          return Promise.resolve(seal(stranger, { ...good, workload: 'bad-6' }));
        },
      ],
    ];

    function seal(identity: Identity, data: unknown): Uint8Array {
      const subject = subjects.req('migrate');
      return encodeEnvelope(sealEnvelope(identity, { natssubject: subject, type: subject, data }));
    }

    it.for(cases)('%s → %s', async ([, code, build]) => {
      const bytes = await build();
      await operator.publishRaw(subjects.req('migrate'), bytes);
      const text = new TextDecoder().decode(bytes);
      const parked = await pollUntil(`the dead letter for ${code}`, async () =>
        (await operator.deadLetters()).find((d) => d.data === text),
      );
      expect(parked.subject).toBe('ccm.dlq.saga-coordinator.migrate-intake');
      expect(parked.original).toBe('ccm.req.migrate');
      expect(parked.reason).toContain(code);
    });

    it('none of them became a migration', async () => {
      const all = await operator.list({ limit: 500 });
      expect(all.items.filter((m) => m.workload.startsWith('bad'))).toEqual([]);
      expect(participants.received.filter((c) => c.payload.workload.id.startsWith('bad'))).toEqual([]);
    });
  });
});
