import { CONTAINER_MIGRATION, VM_MIGRATION } from '@ccm/saga';
import {
  FAST_ENV,
  newMigration,
  participantSteps,
  pollUntil,
  settled,
  startActors,
  startServiceProcess,
  startTestStack,
  type OperatorClient,
  type ScriptedParticipants,
  type ServiceProcess,
  type TestStack,
} from '@ccm/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const MIGRATIONS = 8;
/**
 * Every step timeout ≥ 15 s: far longer than a lease, so recovery must come from the lease, not a
 * retry; and no periodic re-send of an unanswered command, so each re-send counted is a takeover's.
 */
const ENV = {
  ...FAST_ENV,
  CCM_SAGA_LEASE_MS: '1500',
  CCM_SAGA_MIN_STEP_TIMEOUT_MS: '15000',
  CCM_STEP_RESEND_MS: '3600000',
  CCM_LOG_LEVEL: 'log',
};

describe('two coordinator replicas, one killed with SIGKILL in the middle of a step', () => {
  let stack: TestStack;
  let operator: OperatorClient;
  let participants: ScriptedParticipants;
  let db: pg.Client;
  const replicas = new Map<string, ServiceProcess>();
  const ids: Array<{ id: string; kind: 'container' | 'vm' }> = [];
  let victim: string;
  let survivor: string;
  let orphaned: string[];

  beforeAll(async () => {
    stack = await startTestStack({ scriptedHosts: true });
    ({ operator, participants } = await startActors(stack));
    db = new pg.Client(stack.postgres.url);
    await db.connect();
    for (const name of ['replica-a', 'replica-b']) {
      replicas.set(
        name,
        await startServiceProcess('saga-coordinator', stack.env({ ...ENV, CCM_INSTANCE_ID: name }), {
          readyTimeoutMs: 60_000,
        }),
      );
    }
    // The long step of each saga acts, then holds its reply until after the kill.
    let release!: () => void;
    const afterKill = new Promise<void>((r) => (release = r));
    const held = new Set(['pre-copy', 'converge']);
    for (let i = 0; i < MIGRATIONS; i++) {
      const { key, id } = newMigration();
      const kind = i % 2 ? 'vm' : 'container';
      ids.push({ id, kind });
      participants.plan(id, (c) =>
        held.has(c.step) && c.firstOfKey
          ? { kind: 'hold', until: afterKill }
          : { kind: 'succeed', delayMs: 5 },
      );
      await operator.migrate({ workload: `w${i}`, kind, sourceHost: `s${i}`, targetHost: `t${i}` }, key);
    }
    await pollUntil(
      'every saga in its long step',
      () => ids.every(({ id }) => participants.receivedFor(id).some((c) => held.has(c.step))),
      Boolean,
      { timeoutMs: 30_000 },
    );
    const owners = await db.query<{ lease_owner: string; n: number }>(
      `SELECT lease_owner, count(*)::int AS n FROM saga_coordinator.migration
       WHERE ended_at IS NULL GROUP BY lease_owner ORDER BY n DESC`,
    );
    victim = owners.rows[0].lease_owner;
    survivor = victim === 'replica-a' ? 'replica-b' : 'replica-a';
    orphaned = (
      await db.query<{ id: string }>(`SELECT id FROM saga_coordinator.migration WHERE lease_owner = $1`, [
        victim,
      ])
    ).rows.map((r) => r.id);
    const exit = await replicas.get(victim)!.stop('SIGKILL');
    expect(exit.signal).toBe('SIGKILL');
    // The participants answer now: the killed replica's replies go nowhere.
    release();
  }, 180_000);

  afterAll(async () => {
    await Promise.allSettled([...replicas.values()].map((p) => p.stop('SIGKILL')));
    await db?.end();
    await participants?.stop();
    await operator?.close();
    await stack?.stop();
  });

  it('the survivor takes the killed replica’s sagas over and every saga succeeds', async () => {
    expect(orphaned.length).toBeGreaterThan(0);
    for (const { id } of ids) {
      const { detail } = await settled(operator, id, 60_000);
      expect(detail.phase).toBe('Succeeded');
    }
    const log = replicas.get(survivor)!.lines.map((l) => (typeof l === 'string' ? l : String(l['message'])));
    for (const id of orphaned) expect(log).toContain(`took over ${id} from ${victim} (lease lapsed)`);
  });

  it('each participant counted exactly one effect per step, and no step was sent under a second attempt', () => {
    for (const { id, kind } of ids) {
      const def = kind === 'vm' ? VM_MIGRATION : CONTAINER_MIGRATION;
      const effects = participants.effectsOf(id);
      expect(effects.map((e) => `${e.step}:${e.kind}`)).toEqual(
        participantSteps(def).map((s) => `${s}:action`),
      );
      const keysPerStep = new Map<string, Set<string>>();
      for (const c of participants.receivedFor(id)) {
        keysPerStep.set(c.step, (keysPerStep.get(c.step) ?? new Set()).add(c.key));
      }
      for (const [step, keys] of keysPerStep) expect([step, [...keys]]).toEqual([step, [`${id}:${step}:1`]]);
    }
  });

  it('the sagas it took over had their step in flight re-sent with the same idempotency key', () => {
    for (const id of orphaned) {
      const resent = participants.receivedFor(id).filter((c) => !c.firstOfKey);
      expect(resent.map((c) => c.step)).toEqual([expect.stringMatching(/^(pre-copy|converge)$/)]);
    }
  });
});
