import { type INestApplication } from '@nestjs/common';
import { MESSAGING_OPTIONS, type MessagingOptions } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { SERVICE_CONFIG } from '@ccm/runtime';
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
import { type DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CoordinatorConfig } from '../config.js';
import { MIGRATION } from '../db/schema.js';
import { startCoordinator } from '../testing/harness.js';
import { SagaCatalog } from './catalog.js';
import { Leases } from './leases.js';
import { SagaRunner } from './runner.js';

/**
 * Step timeouts far longer than leases: only the lease machinery can move a saga on in time; and no
 * periodic re-send of an unanswered command, so each re-send counted here is a takeover's.
 */
const ENV = {
  CCM_SAGA_MIN_STEP_TIMEOUT_MS: '30000',
  CCM_SAGA_LEASE_MS: '600',
  CCM_STEP_RESEND_MS: '3600000',
};

describe('leases move a saga to another replica', () => {
  let stack: TestStack;
  let a: INestApplication;
  let b: INestApplication | undefined;
  let operator: OperatorClient;
  let participants: ScriptedParticipants;
  let ds: DataSource;

  beforeAll(async () => {
    stack = await startTestStack({ scriptedHosts: true });
    a = await startCoordinator(stack, ENV, 'replica-a');
    ds = a.get<DataSource>(DATA_SOURCE);
    ({ operator, participants } = await startActors(stack));
  });
  afterAll(async () => {
    await participants?.stop();
    await operator?.close();
    await b?.close();
    await a?.close().catch(() => undefined);
    await stack?.stop();
  });

  async function holdAtPreCopy() {
    let release!: () => void;
    const until = new Promise<void>((r) => (release = r));
    const { key, id } = newMigration();
    participants.plan(id, (c) =>
      c.step === 'pre-copy' && c.firstOfKey ? { kind: 'hold', until } : undefined,
    );
    await operator.migrate(
      { workload: `l-${id.slice(-6)}`, sourceHost: 'host-a', targetHost: 'host-b' },
      key,
    );
    await pollUntil('pre-copy sent', () => participants.receivedFor(id).some((c) => c.step === 'pre-copy'));
    return { id, release };
  }

  it('keeps renewing the leases it holds', async () => {
    const { id, release } = await holdAtPreCopy();
    const first = await ds.query<Array<{ lease_until: Date }>>(
      `SELECT lease_until FROM ${MIGRATION} WHERE id = $1`,
      [id],
    );
    await pollUntil(
      'a renewal',
      () =>
        ds.query<Array<{ lease_until: Date; lease_owner: string }>>(
          `SELECT lease_until, lease_owner FROM ${MIGRATION} WHERE id = $1`,
          [id],
        ),
      (rows) =>
        rows[0].lease_until.getTime() > first[0].lease_until.getTime() && rows[0].lease_owner === 'replica-a',
    );
    release();
    expect((await settled(operator, id)).detail.phase).toBe('Succeeded');
  });

  it('a replica that shuts down hands its sagas to another at once', async () => {
    b = await startCoordinator(stack, ENV, 'replica-b');
    const { id, release } = await holdAtPreCopy();
    const owner = (
      await ds.query<Array<{ lease_owner: string }>>(`SELECT lease_owner FROM ${MIGRATION} WHERE id = $1`, [
        id,
      ])
    )[0].lease_owner;
    const [leaving, staying] = owner === 'replica-a' ? [a, b] : [b, a];
    await leaving.close();
    if (leaving === b) b = undefined;
    await pollUntil('the other replica to hold it', () => staying.get(SagaRunner).heldIds().includes(id));
    release();
    const { detail } = await settled(operator, id);
    expect(detail.phase).toBe('Succeeded');
    expect(
      participants
        .receivedFor(id)
        .filter((c) => c.step === 'pre-copy')
        .map((c) => c.key),
    ).toEqual([`${id}:pre-copy:1`, `${id}:pre-copy:1`]);
    if (leaving === a) a = staying;
  });
});

describe('lease queries (regression: UPDATE ... RETURNING through TypeORM answers [rows, count])', () => {
  let stack: TestStack;
  let app: INestApplication;
  let ds: DataSource;
  let leases: Leases;

  beforeAll(async () => {
    stack = await startTestStack({ scriptedHosts: true });
    // A tick far in the future: the replica itself stays out of the way of the leases under test.
    app = await startCoordinator(
      stack,
      { CCM_SAGA_TICK_MS: '60000', CCM_SAGA_LEASE_MS: '180000' },
      'replica-a',
    );
    ds = app.get<DataSource>(DATA_SOURCE);
    const config = app.get<CoordinatorConfig>(SERVICE_CONFIG);
    leases = new Leases(
      ds,
      { ...app.get<MessagingOptions>(MESSAGING_OPTIONS), instanceId: 'replica-x' },
      config,
    );
    const state = app.get(SagaCatalog).forKind('container').create('mig-ghosted', Date.now());
    await ds.query(
      `INSERT INTO ${MIGRATION} (id, idempotency_key, saga, kind, workload_id, source_host, target_host, priority,
         priority_rank, request, requested_by, phase, state, admitted_at, lease_owner, lease_until)
       VALUES ('mig-ghosted', 'k-ghosted', $1, 'container', 'w', 'a', 'b', 'user', 0, '{}', 'operator', 'Pending',
         $2, now(), 'ghost', now() - interval '1 second')`,
      [state.saga, JSON.stringify(state)],
    );
  });
  afterAll(async () => {
    await app?.close();
    await stack?.stop();
  });

  it('takes over a lapsed lease and reports whose it was', async () => {
    const taken = await leases.takeOver();
    expect(taken).toEqual([
      {
        previousOwner: 'ghost',
        row: expect.objectContaining({ id: 'mig-ghosted', mine: true, kind: 'container', sourceHost: 'a' }),
      },
    ]);
    expect(taken[0].row.state?.migrationId).toBe('mig-ghosted');
    expect(await leases.takeOver()).toEqual([]);
  });

  it('renews exactly the leases it holds, and hands them back', async () => {
    expect(await leases.renew()).toEqual(new Set(['mig-ghosted']));
    expect(await leases.releaseAll()).toBe(1);
    expect(await leases.renew()).toEqual(new Set());
  });
});
