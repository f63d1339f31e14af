import { type SagaDefinition } from '@ccm/saga';
import {
  pollUntil,
  newMigration,
  settled,
  type SeenEvent,
  type Behaviour,
  type ReceivedCommand,
} from '@ccm/testing';
import { describe, expect, it } from 'vitest';
import { SAGAS, compensationsFrom, coordinatorWorld, kindOf } from '../testing/world.js';

/**
 * Step timeouts at 1/500 (pre-copy 3.6 s), none below 2.5 s: with 1 s, a refusal that reached the
 * coordinator late on a loaded machine (load 15+) counted as a timeout and was compensated.
 */
const ENV = { CCM_SAGA_TIME_SCALE: '0.002', CCM_SAGA_MIN_STEP_TIMEOUT_MS: '2500' };

/** Every step a participant can fail (all but the coordinator's own admit), with its saga. */
const failable = SAGAS.flatMap((def) =>
  def.steps.map((step, index) => ({ def, step: step.name, index })).filter((c) => c.index > 0),
);
/** Steps with a compensation, where an action that timed out after acting must be undone too. */
const compensable = failable.filter((c) => c.def.steps[c.index].compensation);

const compensated = (events: SeenEvent[]) =>
  events.filter((e) => e.name === 'compensation-succeeded').map((e) => e.data['step']);

describe('failures roll a migration back through the right compensations', () => {
  const w = coordinatorWorld(ENV);
  let n = 0;

  async function run(def: SagaDefinition, script: (c: ReceivedCommand) => Behaviour | undefined) {
    const { key, id } = newMigration();
    w.participants.plan(id, script);
    n += 1;
    await w.operator.migrate(
      { workload: `w${n}`, kind: kindOf(def), sourceHost: `src-${n}`, targetHost: `dst-${n}` },
      key,
    );
    return { id, ...(await settled(w.operator, id, 45_000)) };
  }

  it.concurrent.for(failable)(
    '$def.name: a refused $step rolls back every earlier step in reverse',
    async ({ def, step, index }, { expect }) => {
      const { id, detail, events } = await run(def, (c) =>
        c.step === step && c.kind === 'action'
          ? { kind: 'fail', retryable: false, effect: 'none' }
          : undefined,
      );
      const pastPivot = index > def.pivotIndex;
      expect(detail.phase).toBe(pastPivot ? 'NeedsOperator' : 'RolledBack');
      const expected = pastPivot ? [] : compensationsFrom(def, index - 1);
      expect(compensated(events)).toEqual(expected);
      expect(
        w.participants
          .effectsOf(id)
          .filter((e) => e.kind === 'compensation')
          .map((e) => e.step),
      ).toEqual(expected.filter((s) => s !== 'admit'));
      expect(detail.reason).toContain(`of step "${step}"`);
      if (pastPivot) expect(detail.reason).toContain('past the point of no return');
    },
  );

  it.concurrent.for(compensable)(
    '$def.name: $step timing out after taking effect is compensated with the steps before it',
    async ({ def, step, index }, { expect }) => {
      const { detail, events } = await run(def, (c) => {
        if (c.step !== step || c.kind !== 'action') return undefined;
        return c.attempt === 1
          ? { kind: 'hang', takeEffect: true }
          : { kind: 'fail', retryable: false, effect: 'none' };
      });
      expect(detail.phase).toBe('RolledBack');
      expect(compensated(events)).toEqual(compensationsFrom(def, index));
      const attempts = detail.steps[index].attempts.filter((a) => a.kind === 'action').map((a) => a.status);
      expect(attempts).toEqual(['TimedOut', 'Failed']);
      expect(events.some((e) => e.name === 'step-timed-out' && e.data['step'] === step)).toBe(true);
    },
  );

  it('a compensation that keeps failing ends in NeedsOperator with the reason recorded', async () => {
    const { detail, events } = await run(SAGAS[0], (c) => {
      if (c.step === 'restore' && c.kind === 'action')
        return { kind: 'fail', retryable: false, effect: 'none' };
      if (c.step === 'freeze-dump' && c.kind === 'compensation') {
        return {
          kind: 'fail',
          retryable: true,
          effect: 'maybe',
          code: 'THAW_FAILED',
          message: 'cgroup gone',
        };
      }
      return undefined;
    });
    expect(detail.phase).toBe('NeedsOperator');
    expect(detail.reason).toContain('thaw-source of step "freeze-dump"');
    expect(detail.reason).toContain('THAW_FAILED: cgroup gone');
    expect(detail.reason).toContain(
      'still to compensate: pre-copy, join-overlay, release-key, provision-target, admit',
    );
    const thaws = detail.steps
      .find((s) => s.name === 'freeze-dump')!
      .attempts.filter((a) => a.kind === 'compensation');
    expect(thaws).toHaveLength(8);
    expect(thaws.every((a) => a.error?.code === 'THAW_FAILED')).toBe(true);
    expect(events.at(-1)).toMatchObject({ name: 'finished', data: { phase: 'NeedsOperator' } });
    expect(events.filter((e) => e.name === 'retry-scheduled')).toHaveLength(7);
  });

  it('a participant that crashes mid-step is retried once it is back, and acts once', async () => {
    const { key, id } = newMigration();
    w.participants.plan(id, (c) =>
      c.step === 'provision-target' && c.attempt === 1 ? { kind: 'crash', takeEffect: true } : undefined,
    );
    await w.operator.migrate({ workload: 'crashy', sourceHost: 'host-a', targetHost: 'host-b' }, key);
    await pollUntil('vm-lifecycle to crash', () =>
      w.participants.receivedFor(id).some((c) => c.step === 'provision-target'),
    );
    await w.participants.restart('vm-lifecycle');
    const { detail } = await settled(w.operator, id);
    expect(detail.phase).toBe('Succeeded');
    const provision = detail.steps.find((s) => s.name === 'provision-target')!.attempts;
    expect(provision.map((a) => a.status).at(-1)).toBe('Succeeded');
    expect(provision.length).toBeGreaterThan(1);
    expect(w.participants.effectsOf(id).filter((e) => e.step === 'provision-target')).toHaveLength(1);
  });
});
