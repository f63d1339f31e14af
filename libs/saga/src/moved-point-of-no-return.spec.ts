import { describe, expect, it } from 'vitest';
import { CancelRefusalReason } from './decisions.js';
import { createSagaMachine } from './machine.js';
import { SagaPhase } from './phases.js';
import { COMMITS_NEXT_STEP, isPastPivot, movedPointOfNoReturn, pointOfNoReturn } from './state.js';
import { SagaDriver } from './test-driver.js';
import { VM_MIGRATION, VmStep } from './vm-migration.js';

/**
 * A VM migration whose converge result says `switch-over` cannot be undone, so the saga's point of no
 * return moves from `verify` to `switch-over`: one that switched to post-copy (the destination runs
 * with part of the guest's memory), and an SEV guest's (switch-over ends with SEND_FINISH, which
 * leaves the source's guest context SENT: the source can never run again). The reasons are the source
 * host-agent's (apps/host-agent `switchOverCommits`).
 */
const machine = createSagaMachine(VM_MIGRATION);
const COMMITTING = [
  {
    name: 'post-copy',
    result: {
      expectedDowntimeMs: 0,
      bytesTransferred: 1,
      postcopy: true,
      [COMMITS_NEXT_STEP]:
        'post-copy (pre-copy does not converge): once the destination runs, the source cannot resume',
    },
    why: 'post-copy',
  },
  {
    name: 'SEV-ES guest',
    result: {
      expectedDowntimeMs: 3,
      bytesTransferred: 1,
      sevMode: 'sev-es',
      [COMMITS_NEXT_STEP]:
        "SEV-ES guest: switch-over ends with SEND_FINISH, which leaves the source's guest context SENT; " +
        'the SEV source cannot be resumed after SEND_FINISH',
    },
    why: 'SEV-ES guest: switch-over ends with SEND_FINISH',
  },
] as const;
const PRECOPY = { expectedDowntimeMs: 3, bytesTransferred: 1 };
const switchOverIndex = VM_MIGRATION.steps.findIndex((s) => s.name === VmStep.SwitchOver);

/** Runs to `converge` and answers it with `result`. */
function converged(result: object): SagaDriver {
  const d = new SagaDriver(machine).runUntil(VmStep.Converge);
  d.succeed(result);
  return d;
}

describe.each(COMMITTING)(
  'a converge result that moves the point of no return ($name)',
  ({ result, why }) => {
    it('moves it to switch-over, with the reason shown', () => {
      const d = converged(result);
      expect(pointOfNoReturn(VM_MIGRATION, d.state)).toBe(switchOverIndex);
      expect(movedPointOfNoReturn(VM_MIGRATION, d.state)).toEqual({
        index: switchOverIndex,
        reason: result[COMMITS_NEXT_STEP],
      });
    });

    it('a cancel while converge runs still rolls back to the source; its late reply changes nothing', () => {
      const d = new SagaDriver(machine).runUntil(VmStep.Converge);
      const attempt = d.awaited()!.attempt;
      expect(d.feed({ type: 'CancelRequested', reason: 'operator' }).changed).toBe(true);
      d.feed({ type: 'StepSucceeded', step: VmStep.Converge, attempt, result });
      while (d.awaited()) d.succeed();
      expect(d.state.phase).toBe(SagaPhase.Cancelled);
      expect(d.compensated()).toContain('start-migration');
      expect(d.state.steps[switchOverIndex].actions).toEqual([]);
    });

    it('refuses a cancel once switch-over was sent, saying why', () => {
      const d = converged(result);
      expect(d.awaited()?.step).toBe(VmStep.SwitchOver);
      expect(isPastPivot(VM_MIGRATION, d.state)).toBe(true);
      const r = d.feed({ type: 'CancelRequested' });
      expect(r.changed).toBe(false);
      expect(r.decisions).toEqual([
        expect.objectContaining({
          type: 'CancelRefused',
          reason: CancelRefusalReason.PastPointOfNoReturn,
          message: expect.stringContaining(`(step "switch-over" was sent: ${result[COMMITS_NEXT_STEP]})`),
        }),
      ]);
      // still refused while verify runs
      d.succeed();
      expect(d.awaited()?.step).toBe(VmStep.Verify);
      expect(d.feed({ type: 'CancelRequested' }).decisions).toEqual([
        expect.objectContaining({ reason: CancelRefusalReason.PastPointOfNoReturn }),
      ]);
    });

    it.each([VmStep.SwitchOver, VmStep.Verify])(
      'a failure at %s ends NeedsOperator and compensates nothing',
      (failing) => {
        const d = converged(result);
        while (d.awaited()?.step !== failing) d.succeed();
        d.fail({ retryable: false, effect: 'maybe' });
        expect(d.state.phase).toBe(SagaPhase.NeedsOperator);
        expect(d.compensated()).toEqual([]);
        expect(d.state.reason).toContain(`past the point of no return ("switch-over" was sent: ${why}`);
      },
    );

    it('a switch-over whose every attempt failed with no effect rolls back to the source', () => {
      const d = converged(result);
      expect(d.awaited()?.step).toBe(VmStep.SwitchOver);
      d.fail({ retryable: false, effect: 'none' });
      while (d.awaited()) d.succeed();
      expect(d.state.phase).toBe(SagaPhase.RolledBack);
      expect(d.compensated()).toContain('start-migration');
    });

    it('a switch-over that times out is not rolled back either', () => {
      const d = converged(result);
      while (d.awaited()) {
        d.timeOut();
        if (d.state.timers.some((t) => t.purpose === 'retry')) d.fireRetry();
      }
      expect(d.state.phase).toBe(SagaPhase.NeedsOperator);
      expect(d.compensated()).toEqual([]);
    });
  },
);

describe('a converge result that commits nothing (a plain guest, pre-copy)', () => {
  it('keeps the definition pivot, verify', () => {
    const d = converged(PRECOPY);
    expect(pointOfNoReturn(VM_MIGRATION, d.state)).toBe(VM_MIGRATION.pivotIndex);
    expect(movedPointOfNoReturn(VM_MIGRATION, d.state)).toBeUndefined();
    expect(d.feed({ type: 'CancelRequested' }).decisions).not.toContainEqual(
      expect.objectContaining({ type: 'CancelRefused' }),
    );
  });

  it('a failed verify still rolls back to the held source', () => {
    const d = converged(PRECOPY);
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
