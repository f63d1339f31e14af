import { type SagaDefinition } from '@ccm/saga';
import { newMigration, pollUntil, settled, type Script } from '@ccm/testing';
import { describe, expect, it } from 'vitest';
import { SAGAS, coordinatorWorld, kindOf } from '../testing/world.js';

/**
 * Every step timeout at least 20 s and an unanswered command sent again every 250 ms: a step that
 * ends in one attempt well inside its timeout was answered by a re-send, not by a retry.
 */
const RESEND_MS = 250;
const ENV = {
  CCM_SAGA_TIME_SCALE: '0.01',
  CCM_SAGA_MIN_STEP_TIMEOUT_MS: '20000',
  CCM_STEP_RESEND_MS: String(RESEND_MS),
};

describe('an unanswered step command is sent again with the same idempotency key', () => {
  const w = coordinatorWorld(ENV);
  let n = 0;

  async function run(def: SagaDefinition, script: Script) {
    const { key, id } = newMigration();
    w.participants.plan(id, script);
    n += 1;
    const started = performance.now();
    await w.operator.migrate(
      { workload: `r${n}`, kind: kindOf(def), sourceHost: `src-${n}`, targetHost: `dst-${n}` },
      key,
    );
    const { detail } = await settled(w.operator, id, 60_000);
    return { id, detail, ms: performance.now() - started };
  }

  /** Action attempts of every step but the coordinator's own admit. */
  const actionAttempts = (detail: Awaited<ReturnType<typeof run>>['detail']) =>
    detail.steps
      .slice(1)
      .map((s) => [s.name, s.attempts.filter((a) => a.kind === 'action').map((a) => a.status)] as const);

  it.for(SAGAS)(
    '$name: every first delivery lost (after acting) is answered by its re-send, each step acting once',
    async (def, { expect }) => {
      const { id, detail, ms } = await run(def, (c) =>
        c.delivery === 1 ? { kind: 'lose', takeEffect: true } : undefined,
      );
      expect(detail.phase).toBe('Succeeded');
      for (const [step, attempts] of actionAttempts(detail))
        expect([step, attempts]).toEqual([step, ['Succeeded']]);
      const received = w.participants.receivedFor(id);
      const keys = [...new Set(received.map((c) => c.key))];
      // Every command was delivered again under its own key, and none under a second attempt.
      for (const key of keys) expect(received.filter((c) => c.key === key).length).toBeGreaterThan(1);
      expect(received.every((c) => c.attempt === 1)).toBe(true);
      const effects = w.participants.effectsOf(id);
      expect(effects.map((e) => `${e.step}:${e.kind}`)).toEqual([
        ...new Set(effects.map((e) => `${e.step}:${e.kind}`)),
      ]);
      expect(effects.every((e) => e.kind === 'action')).toBe(true);
      // Far below one step timeout, let alone one per step.
      expect(ms).toBeLessThan(20_000);
    },
  );

  it('a participant that crashed with the command takes its re-send once it is back, and acts once', async () => {
    const { key, id } = newMigration();
    let crashedAt = 0;
    w.participants.plan(id, (c) => {
      if (c.step !== 'provision-target' || c.delivery > 1) return undefined;
      crashedAt = performance.now();
      return { kind: 'crash', takeEffect: true };
    });
    await w.operator.migrate({ workload: 'crashed', sourceHost: 'host-a', targetHost: 'host-b' }, key);
    await pollUntil('vm-lifecycle to crash with provision-vm', () => crashedAt > 0);
    // Down for several re-send intervals: the repeats meanwhile find nobody and are sent again.
    await new Promise((r) => setTimeout(r, 4 * RESEND_MS));
    await w.participants.restart('vm-lifecycle');
    const { detail } = await settled(w.operator, id);
    expect(detail.phase).toBe('Succeeded');
    const provision = detail.steps.find((s) => s.name === 'provision-target')!.attempts;
    expect(provision.map((a) => a.status)).toEqual(['Succeeded']);
    const deliveries = w.participants.receivedFor(id).filter((c) => c.step === 'provision-target');
    expect(deliveries.length).toBeGreaterThan(1);
    expect(new Set(deliveries.map((c) => c.key)).size).toBe(1);
    expect(w.participants.effectsOf(id).filter((e) => e.step === 'provision-target')).toHaveLength(1);
  });

  it('repeats that arrive while the first delivery is still worked on join it', async () => {
    const { key, id } = newMigration();
    let release!: () => void;
    const until = new Promise<void>((r) => (release = r));
    w.participants.plan(id, (c) =>
      c.step === 'pre-copy' && c.delivery === 1 ? { kind: 'hold', until } : undefined,
    );
    await w.operator.migrate({ workload: 'slow', sourceHost: 'host-a', targetHost: 'host-b' }, key);
    const preCopy = () => w.participants.receivedFor(id).filter((c) => c.step === 'pre-copy');
    await pollUntil('pre-copy to be sent three times', () => preCopy().length >= 3);
    release();
    const { detail } = await settled(w.operator, id);
    expect(detail.phase).toBe('Succeeded');
    expect(detail.steps.find((s) => s.name === 'pre-copy')!.attempts.map((a) => a.status)).toEqual([
      'Succeeded',
    ]);
    expect(new Set(preCopy().map((c) => c.key)).size).toBe(1);
    expect(w.participants.effectsOf(id).filter((e) => e.step === 'pre-copy')).toHaveLength(1);
  });
});
