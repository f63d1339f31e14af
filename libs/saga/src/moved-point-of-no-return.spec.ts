import { describe, expect, it } from 'vitest';
import { CancelRefusalReason } from './decisions.js';
import { createSagaMachine } from './machine.js';
import { SagaPhase } from './phases.js';
import { COMMITS_NEXT_STEP, isPastPivot, pointOfNoReturn } from './state.js';
import { SagaDriver } from './test-driver.js';
import { VM_MIGRATION, VmStep } from './vm-migration.js';

/**
 * A VM migration that switched to post-copy: the converge step's result says `switch-over` cannot be
 * undone (the destination runs with part of the guest's memory), so the saga's point of no return
 * moves from `verify` to `switch-over`.
 */
const machine = createSagaMachine(VM_MIGRATION);
const POSTCOPY = {
  expectedDowntimeMs: 0,
  bytesTransferred: 1,
  postcopy: true,
  [COMMITS_NEXT_STEP]: 'post-copy',
};
const switchOverIndex = VM_MIGRATION.steps.findIndex((s) => s.name === VmStep.SwitchOver);

/** Runs to `converge` and answers it as a post-copy (or a converged pre-copy) migration. */
function converged(postcopy: boolean): SagaDriver {
  const d = new SagaDriver(machine).runUntil(VmStep.Converge);
  d.succeed(postcopy ? POSTCOPY : { expectedDowntimeMs: 3, bytesTransferred: 1 });
  return d;
}

describe('a step result that moves the point of no return (post-copy)', () => {
  it('moves it to the next step; a pre-copy migration keeps the definition pivot', () => {
    expect(pointOfNoReturn(VM_MIGRATION, converged(true).state)).toBe(switchOverIndex);
    expect(pointOfNoReturn(VM_MIGRATION, converged(false).state)).toBe(VM_MIGRATION.pivotIndex);
  });

  it('a cancel before switch-over is sent still rolls back to the source', () => {
    const d = new SagaDriver(machine).runUntil(VmStep.Converge);
    d.feed({ type: 'CancelRequested', reason: 'operator' });
    while (d.awaited()) d.succeed();
    expect(d.state.phase).toBe(SagaPhase.Cancelled);
    expect(d.compensated()).toContain('start-migration');
  });

  it('refuses a cancel once switch-over was sent', () => {
    const d = converged(true);
    expect(d.awaited()?.step).toBe(VmStep.SwitchOver);
    expect(isPastPivot(VM_MIGRATION, d.state)).toBe(true);
    const r = d.feed({ type: 'CancelRequested' });
    expect(r.changed).toBe(false);
    expect(r.decisions).toEqual([
      expect.objectContaining({
        type: 'CancelRefused',
        reason: CancelRefusalReason.PastPointOfNoReturn,
        message: expect.stringContaining('"switch-over"'),
      }),
    ]);
  });

  it.each([VmStep.SwitchOver, VmStep.Verify])(
    'a failure at %s after the post-copy switch ends NeedsOperator and compensates nothing',
    (failing) => {
      const d = converged(true);
      while (d.awaited()?.step !== failing) d.succeed();
      d.fail({ retryable: false, effect: 'maybe' });
      expect(d.state.phase).toBe(SagaPhase.NeedsOperator);
      expect(d.compensated()).toEqual([]);
      expect(d.state.reason).toMatch(/past the point of no return \("switch-over" was sent: post-copy\)/);
    },
  );

  it('a switch-over that times out after the post-copy switch is not rolled back either', () => {
    const d = converged(true);
    while (d.awaited()) {
      d.timeOut();
      if (d.state.timers.some((t) => t.purpose === 'retry')) d.fireRetry();
    }
    expect(d.state.phase).toBe(SagaPhase.NeedsOperator);
    expect(d.compensated()).toEqual([]);
  });

  it('without post-copy a failed verify still rolls back to the held source', () => {
    const d = converged(false);
    while (d.awaited()?.step !== VmStep.Verify) d.succeed();
    d.fail({ retryable: false, effect: 'none' });
    while (d.awaited()) d.succeed();
    expect(d.state.phase).toBe(SagaPhase.RolledBack);
    expect(d.compensated()).toEqual([
      'switch-over',
      'start-migration',
      'prepare-incoming',
      'transport-session',
      'admit',
    ]);
  });
});
