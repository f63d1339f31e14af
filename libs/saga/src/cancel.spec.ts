import { describe, expect, it } from 'vitest';
import { CONTAINER_MIGRATION } from './container-migration.js';
import { CancelRefusalReason } from './decisions.js';
import { type SagaDefinition } from './definition.js';
import { createSagaMachine } from './machine.js';
import { CommandKind, SagaPhase, StepStatus } from './phases.js';
import { SagaDriver } from './test-driver.js';
import { IgnoreReason } from './transition.js';
import { VM_MIGRATION } from './vm-migration.js';

const CASES: Array<[string, SagaDefinition]> = [
  ['container', CONTAINER_MIGRATION],
  ['vm', VM_MIGRATION],
];

/** Steps up to `index` that have a compensation, last first. */
function reverseCompensable(def: SagaDefinition, index: number): string[] {
  return def.steps
    .slice(0, index + 1)
    .filter((s) => s.compensation)
    .map((s) => s.name)
    .reverse();
}

describe.each(CASES)('%s saga cancellation', (_name, def) => {
  const machine = createSagaMachine(def);
  const beforePivot = def.steps.slice(0, def.pivotIndex).map((s, i) => [s.name, i] as const);
  const waitsForInFlight = beforePivot.filter(([, i]) => !def.steps[i].interruptible);
  const afterPivotSent = def.steps.slice(def.pivotIndex).map((s) => s.name);

  it('before Started: Cancelled at once, nothing sent', () => {
    const d = new SagaDriver(machine);
    d.feed({ type: 'CancelRequested', reason: 'operator changed their mind' });
    expect(d.state.phase).toBe(SagaPhase.Cancelled);
    expect(d.of('SendAction')).toEqual([]);
    expect(d.of('Finished')[0].reason).toContain('operator changed their mind');
  });

  it.each(waitsForInFlight)(
    'while %s is in flight: waits for it, compensates in reverse, Cancelled',
    (step, i) => {
      const d = new SagaDriver(machine).runUntil(step);
      const r = d.feed({ type: 'CancelRequested', reason: 'user asked' });
      expect(r.decisions).toEqual([
        {
          type: 'PhaseChanged',
          from: SagaPhase.Running,
          to: SagaPhase.Cancelling,
          at: d.now,
          reason: 'user asked',
        },
      ]);
      d.succeed();
      while (d.awaited()) d.succeed();
      expect(d.compensated()).toEqual(reverseCompensable(def, i));
      expect(d.state.phase).toBe(SagaPhase.Cancelled);
      expect(d.state.phaseHistory.map((p) => p.phase)).toEqual([
        SagaPhase.Pending,
        SagaPhase.Running,
        SagaPhase.Cancelling,
        SagaPhase.Cancelled,
      ]);
      expect(d.of('SendAction').at(-1)?.step).toBe(step);
    },
  );

  it.each(beforePivot)(
    'while %s waits for a retry: the retry is dropped and compensation starts',
    (step, i) => {
      const d = new SagaDriver(machine).runUntil(step);
      d.fail({ retryable: true, effect: 'none' });
      const retryId = d.state.timers[0].timerId;
      const r = d.feed({ type: 'CancelRequested' });
      expect(r.decisions).toContainEqual({ type: 'CancelTimer', timerId: retryId });
      expect(d.state.steps[i].status).not.toBe(StepStatus.Scheduled);
      while (d.awaited()) d.succeed();
      expect(d.compensated()).toEqual(reverseCompensable(def, i - 1));
      expect(d.state.phase).toBe(SagaPhase.Cancelled);
      expect(d.feed({ type: 'TimerFired', timerId: retryId }).ignored?.reason).toBe(
        IgnoreReason.SagaFinished,
      );
    },
  );

  it('an in-flight action that then fails with no effect is not compensated', () => {
    const step = def.steps[def.pivotIndex - 1].name;
    const d = new SagaDriver(machine).runUntil(step);
    d.feed({ type: 'CancelRequested' });
    d.fail({ retryable: true, effect: 'none' });
    expect(d.of('ScheduleRetry')).toEqual([]);
    while (d.awaited()) d.succeed();
    expect(d.compensated()).toEqual(reverseCompensable(def, def.pivotIndex - 2));
    expect(d.state.phase).toBe(SagaPhase.Cancelled);
  });

  it('an in-flight action that times out after the cancel is compensated', () => {
    const step = def.steps[def.pivotIndex - 1].name;
    const d = new SagaDriver(machine).runUntil(step);
    d.feed({ type: 'CancelRequested' });
    d.timeOut();
    expect(d.awaited()).toMatchObject({ step, kind: CommandKind.Compensation });
  });

  it.each(afterPivotSent)('once the pivot is sent (at %s) cancel is refused and nothing changes', (step) => {
    const d = new SagaDriver(machine).runUntil(step);
    const before = d.state;
    const r = d.feed({ type: 'CancelRequested' });
    expect(r.changed).toBe(false);
    expect(r.state).toBe(before);
    expect(r.decisions).toEqual([
      {
        type: 'CancelRefused',
        reason: CancelRefusalReason.PastPointOfNoReturn,
        message: expect.stringContaining('"verify"'),
      },
    ]);
    expect(machine.cancelRefusal(d.state)?.reason).toBe(CancelRefusalReason.PastPointOfNoReturn);
  });

  it('is refused while the pivot waits for a retry', () => {
    const d = new SagaDriver(machine).runUntil('verify');
    d.fail({ retryable: true, effect: 'none' });
    expect(d.feed({ type: 'CancelRequested' }).decisions[0]).toMatchObject({
      reason: CancelRefusalReason.PastPointOfNoReturn,
    });
  });

  it('is refused while a failure is already rolling back, and after the end', () => {
    const d = new SagaDriver(machine).runUntil('attest-target');
    d.fail({ retryable: false });
    expect(d.feed({ type: 'CancelRequested' }).decisions[0]).toMatchObject({
      type: 'CancelRefused',
      reason: CancelRefusalReason.AlreadyRollingBack,
    });
    d.succeed();
    expect(d.state.phase).toBe(SagaPhase.RolledBack);
    expect(d.feed({ type: 'CancelRequested' }).decisions[0]).toMatchObject({
      reason: CancelRefusalReason.AlreadyFinished,
    });
  });

  it('a second cancel while cancelling is ignored', () => {
    const d = new SagaDriver(machine).runUntil('attest-target');
    d.feed({ type: 'CancelRequested' });
    expect(d.feed({ type: 'CancelRequested' }).ignored?.reason).toBe(IgnoreReason.AlreadyCancelling);
    expect(machine.cancelRefusal(d.state)).toBeUndefined();
  });

  it('a compensation that fails for good ends the cancel in NeedsOperator', () => {
    const d = new SagaDriver(machine).runUntil('attest-target');
    d.feed({ type: 'CancelRequested', reason: 'user asked' });
    d.succeed();
    d.fail({ retryable: false, code: 'LOCK_LOST' });
    expect(d.state.phase).toBe(SagaPhase.NeedsOperator);
    expect(d.state.reason).toMatch(/release-admission.*LOCK_LOST.*because: user asked/);
  });
});

describe('vm saga: a step that only waits', () => {
  const def = VM_MIGRATION;
  const machine = createSagaMachine(def);
  const interruptible = def.steps
    .map((s, i) => [s.name, i] as const)
    .filter(([, i]) => def.steps[i].interruptible);

  it('converge is the one that a cancel abandons', () => {
    expect(interruptible.map(([name]) => name)).toEqual(['converge']);
  });

  it.each(interruptible)(
    'while %s (it only waits) is in flight: abandoned at once, earlier steps compensated, its late reply ignored',
    (step, i) => {
      const d = new SagaDriver(machine).runUntil(step);
      const sent = d.awaited()!;
      d.feed({ type: 'CancelRequested', reason: 'user asked' });
      expect(d.state.steps[i]).toMatchObject({ status: StepStatus.Failed });
      expect(d.state.steps[i].actions.at(-1)).toMatchObject({ effect: 'none', error: { code: 'ABANDONED' } });
      expect(d.awaited()).toMatchObject({ kind: CommandKind.Compensation });
      const late = d.feed({ type: 'StepSucceeded', step, attempt: sent.attempt, result: {} });
      expect(late.ignored?.reason).toBe(IgnoreReason.NotAwaited);
      while (d.awaited()) d.succeed();
      expect(d.compensated()).toEqual(reverseCompensable(def, i - 1));
      expect(d.state.phase).toBe(SagaPhase.Cancelled);
    },
  );
});
