import { generateKeyPairSync } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GUEST_OWNER,
  policyHttpAddress,
  policyHttpPath,
  type Envelope,
  type PolicyHttpVerb,
  type SignerName,
} from '@ccm/contracts';
import { loadIdentity, type Identity } from '@ccm/keys';
import { sealEnvelope } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { createServiceApp } from '@ccm/runtime';
import { type INestApplication } from '@nestjs/common';
import { type DataSource } from 'typeorm';
import { keyBroker } from './app.js';
import { pollUntil } from '@ccm/testing';
import { startBrokerStack, type BrokerStack } from './__fixtures__/broker-stack.js';
import { policy } from './__fixtures__/platforms.js';

/**
 * The guest owner's policy management over HTTP against a real key-broker (NATS, Postgres): the
 * owner's signed envelope works; the operator's and services' keys, forgeries, replays, stale or
 * misaddressed envelopes and bad bodies get typed errors, and nothing changes.
 */
describe('key-broker policy over HTTP', () => {
  let kb: BrokerStack;
  let owner: Identity;
  const http = () => request(kb.broker.getHttpServer() as Parameters<typeof request>[0]);

  const seal = (
    id: Identity,
    verb: PolicyHttpVerb,
    data: unknown,
    over: { natssubject?: string; time?: Date } = {},
  ): Envelope =>
    sealEnvelope(id, {
      natssubject: over.natssubject ?? policyHttpAddress(verb),
      type: `key-broker.${verb}`,
      data,
      ...(over.time ? { time: over.time } : {}),
    });
  const post = (verb: string, body: unknown) =>
    http()
      .post(`/v1/policy/${verb}`)
      .send(body as object);
  const as = (signer: SignerName) => loadIdentity(kb.stack.keysDir, signer);
  const put = (expectedVersion: number, over: Parameters<typeof policy>[0] = {}) => ({
    policy: policy({ workloadClass: 'http-web', workloads: ['http-1'], ...over }),
    expectedVersion,
  });
  /** The latest version of the class as the owner reads it over HTTP (0: none). */
  const version = async () => {
    const r = await post('list-policies', seal(owner, 'list-policies', {}));
    expect(r.status).toBe(200);
    const p = (r.body as { policies: Array<{ workloadClass: string; version: number }> }).policies;
    return p.find((x) => x.workloadClass === 'http-web')?.version ?? 0;
  };

  beforeAll(async () => {
    kb = await startBrokerStack([]);
    owner = await as(GUEST_OWNER);
  }, 120_000);
  afterAll(async () => {
    await kb?.close();
  });

  it('the owner puts, reads and lists a policy; each change is an event', async () => {
    const r = await post('put-policy', seal(owner, 'put-policy', put(0)));
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ workloadClass: 'http-web', version: 1, changedBy: GUEST_OWNER });
    const got = await post('get-policy', seal(owner, 'get-policy', { workloadClass: 'http-web' }));
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ version: 1, policy: { workloads: ['http-1'] } });
    expect(await version()).toBe(1);
    const list = await post('list-policies', seal(owner, 'list-policies', {}));
    expect(list.body).toMatchObject({
      policies: [expect.objectContaining({ workloadClass: 'http-web', workloads: ['http-1'] })],
    });
    await pollUntil('the policy.changed event', () =>
      kb.events.some((e) => e.subject === 'ccm.evt.policy.http-web.changed'),
    );
    expect(policyHttpPath('put-policy')).toBe('/v1/policy/put-policy');
  });

  it('refuses the operator and service keys (attackers holding a CCM key that is not the owner’s)', async () => {
    const before = await version();
    for (const signer of ['operator', 'saga-coordinator', 'key-broker', 'vm-lifecycle'] as const) {
      const r = await post('put-policy', seal(await as(signer), 'put-policy', put(before)));
      expect(r.status, signer).toBe(403);
      expect(r.body.error, signer).toMatchObject({ code: 'UNAUTHORIZED', retryable: false });
      const read = await post(
        'get-policy',
        seal(await as(signer), 'get-policy', { workloadClass: 'http-web' }),
      );
      expect(read.body.error?.code, signer).toBe('UNAUTHORIZED');
    }
    expect(await version()).toBe(before);
  });

  it('refuses forgeries, replays, stale and misaddressed envelopes', async () => {
    const before = await version();
    const op = await as('operator');
    const cases: Array<[string, unknown, number, string]> = [];
    // The operator's key claiming to be the owner.
    const claimed = seal(op, 'put-policy', put(before));
    cases.push(['source claimed', { ...claimed, source: GUEST_OWNER }, 401, 'SIGNATURE_INVALID']);
    // The owner's envelope with its payload changed after signing.
    const signed = seal(owner, 'put-policy', put(before));
    const altered = { ...signed, data: put(before, { workloads: ['http-1', 'evil'] }) };
    cases.push(['payload altered', altered, 401, 'SIGNATURE_INVALID']);
    // A key nobody trusts.
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    void publicKey;
    const stranger: Identity = { ...owner, signingKey: privateKey, keyId: 'stranger-key' };
    cases.push(['unknown key', seal(stranger, 'put-policy', put(before)), 401, 'UNKNOWN_SIGNER']);
    cases.push(['unsigned', { ...signed, signature: undefined }, 401, 'SIGNATURE_MISSING']);
    // Signed for NATS, or for another verb.
    const nats = seal(owner, 'put-policy', put(before), { natssubject: 'ccm.cmd.key-broker.put-policy' });
    cases.push(['signed for NATS', nats, 400, 'MISADDRESSED']);
    const other = seal(owner, 'get-policy', { workloadClass: 'http-web' });
    cases.push(['signed for get-policy', other, 400, 'MISADDRESSED']);
    const old = seal(owner, 'put-policy', put(before), { time: new Date(Date.now() - 3_600_000) });
    cases.push(['an hour old', old, 401, 'STALE']);
    for (const [name, body, status, code] of cases) {
      const r = await post('put-policy', body);
      expect(r.body.error?.code, name).toBe(code);
      expect(r.status, name).toBe(status);
    }
    // A replay of a taken envelope: refused, whatever its first outcome was.
    const once = seal(owner, 'get-policy', { workloadClass: 'http-web' });
    expect((await post('get-policy', once)).status).toBe(200);
    const replay = await post('get-policy', once);
    expect(replay.status).toBe(409);
    expect(replay.body.error.code).toBe('REPLAYED');
    expect(await version()).toBe(before);
  });

  it('bad bodies get typed errors, never INTERNAL', async () => {
    const notJson = await http()
      .post('/v1/policy/put-policy')
      .set('content-type', 'application/json')
      .send('{"not json');
    expect(notJson.status, notJson.text).toBe(400);
    expect(notJson.body.error?.code, notJson.text).toBe('MALFORMED_MESSAGE');
    for (const raw of ['[]', '"text"', '42', 'null']) {
      const r = await http().post('/v1/policy/put-policy').set('content-type', 'application/json').send(raw);
      expect(r.status, raw).toBe(400);
      expect(['MALFORMED_MESSAGE', 'VALIDATION_FAILED'], raw).toContain(r.body.error?.code);
    }
    const empty = await post('put-policy', {});
    expect(empty.body.error.code).toBe('VALIDATION_FAILED');
    const badPolicy = await post(
      'put-policy',
      seal(owner, 'put-policy', { policy: { workloadClass: '' }, expectedVersion: 0 }),
    );
    expect(badPolicy.status).toBe(400);
    expect(badPolicy.body.error.code).toBe('VALIDATION_FAILED');
    const conflict = await post('put-policy', seal(owner, 'put-policy', put(0)));
    expect(conflict.status).toBe(409);
    expect(conflict.body.error.code).toBe('CONFLICT');
    const missing = await post('get-policy', seal(owner, 'get-policy', { workloadClass: 'nope' }));
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('POLICY_NOT_FOUND');
    const verb = await post('delete-everything', seal(owner, 'put-policy', put(0)));
    expect(verb.status).toBe(404);
    expect(verb.body.error.code).toBe('NOT_FOUND');
  });

  it('an envelope is taken once across replicas and restarts: the ids are in Postgres until they expire', async () => {
    const replica = async (name: string): Promise<INestApplication> => {
      const { app } = await createServiceApp(keyBroker, kb.stack.env({ CCM_INSTANCE_ID: name }));
      await app.init();
      return app;
    };
    const postTo = (app: INestApplication, body: Envelope) =>
      request(app.getHttpServer() as Parameters<typeof request>[0])
        .post('/v1/policy/list-policies')
        .send(body);
    const taken = seal(owner, 'list-policies', {});
    expect((await post('list-policies', taken)).status).toBe(200);
    const b = await replica('kb-http-replica-b');
    try {
      // Another replica (its process memory never saw the envelope) refuses the replay.
      const replay = await postTo(b, taken);
      expect(replay.status).toBe(409);
      expect(replay.body.error).toMatchObject({
        code: 'REPLAYED',
        retryable: false,
        details: { id: taken.id },
      });
      // Sent to both at once: exactly one takes it.
      const twice = seal(owner, 'list-policies', {});
      const both = await Promise.all([post('list-policies', twice), postTo(b, twice)]);
      expect(both.map((r) => r.status).sort()).toEqual([200, 409]);
    } finally {
      await b.close();
    }
    // A restarted broker (a new instance, nothing in memory) still refuses it.
    const c = await replica('kb-http-replica-c');
    try {
      expect((await postTo(c, taken)).body.error?.code).toBe('REPLAYED');
    } finally {
      await c.close();
    }
    // Past its window an id is deleted when the next envelope comes in (the envelope is STALE by then).
    const ds = kb.broker.get<DataSource>(DATA_SOURCE);
    await ds.query(
      `UPDATE key_broker.http_envelope_seen SET expires_at = now() - interval '1 second' WHERE id = $1`,
      [taken.id],
    );
    expect((await post('list-policies', seal(owner, 'list-policies', {}))).status).toBe(200);
    const left = await ds.query<unknown[]>(`SELECT 1 FROM key_broker.http_envelope_seen WHERE id = $1`, [
      taken.id,
    ]);
    expect(left).toHaveLength(0);
  });
});
