import { describe, expect, it } from 'vitest';
import { createSagaMachine } from './machine.js';
import { AttemptStatus, CommandKind, SagaPhase, StepStatus } from './phases.js';
import { SagaDriver } from './test-driver.js';
import { SPEC_SAGA } from './test-saga.js';

/** A random source that returns `value` and records the timer ids it was asked about. */
function fixedRandom(value: number): { fn: (id: string) => number; ids: string[] } {
  const ids: string[] = [];
  return { fn: (id) => (ids.push(id), value), ids };
}

describe('retries', () => {
  it('backs off exponentially with cap and jitter from the injected random source, then gives up', () => {
    const random = fixedRandom(0.5);
    const d = new SagaDriver(createSagaMachine(SPEC_SAGA, { random: random.fn }), 'mig-1', 0);
    d.start();
    const retries = [];
    for (let i = 0; i < 3; i++) {
      d.fail({ retryable: true });
      retries.push(d.of('ScheduleRetry').at(-1));
      d.fireRetry();
    }
    // base 1 s, factor 2, cap 5 s, jitter 0.5 at random 0.5: 1000*0.75, 2000*0.75, 4000*0.75
    expect(retries.map((r) => [r?.attempt, r?.delayMs])).toEqual([
      [2, 750],
      [3, 1_500],
      [4, 3_000],
    ]);
    expect(retries.map((r) => r?.at)).toEqual([750, 2_250, 5_250]);
    expect(d.of('SendAction').map((s) => [s.attempt, s.idempotencyKey])).toEqual([
      [1, 'mig-1:lock:1'],
      [2, 'mig-1:lock:2'],
      [3, 'mig-1:lock:3'],
      [4, 'mig-1:lock:4'],
    ]);
    expect(random.ids).toEqual(['mig-1:lock:2:retry', 'mig-1:lock:3:retry', 'mig-1:lock:4:retry']);
    d.fail({ retryable: true });
    expect(d.state.steps[0].actions.map((a) => a.status)).toEqual(Array(4).fill(AttemptStatus.Failed));
    expect(d.state.phase).toBe(SagaPhase.Compensating);
    expect(d.awaited()).toMatchObject({ step: 'lock', kind: CommandKind.Compensation });
    expect(d.state.reason).toContain('attempt 4/4');
  });

  it('marks a waiting step Scheduled and arms exactly one retry timer', () => {
    const d = new SagaDriver(createSagaMachine(SPEC_SAGA, { random: () => 0 }), 'mig-1', 0);
    d.start();
    d.fail({ retryable: true });
    expect(d.state.steps[0].status).toBe(StepStatus.Scheduled);
    expect(d.state.timers).toEqual([
      {
        timerId: 'mig-1:lock:2:retry',
        purpose: 'retry',
        step: 'lock',
        kind: CommandKind.Action,
        attempt: 2,
        at: 1_000,
      },
    ]);
  });

  it('a non-retryable error stops retries at once', () => {
    const d = new SagaDriver(createSagaMachine(SPEC_SAGA));
    d.start();
    d.succeed();
    d.fail({ retryable: false });
    expect(d.of('ScheduleRetry')).toEqual([]);
    expect(d.state.steps[1].status).toBe(StepStatus.Failed);
    expect(d.state.reason).toContain('(not retryable)');
  });

  it('timeouts are retried and recorded as TimedOut with "maybe" effect', () => {
    const d = new SagaDriver(createSagaMachine(SPEC_SAGA, { random: () => 0 }), 'mig-1', 0);
    d.start();
    d.timeOut();
    expect(d.now).toBe(1_000);
    expect(d.state.steps[0].actions[0]).toMatchObject({
      status: AttemptStatus.TimedOut,
      effect: 'maybe',
      endedAt: 1_000,
    });
    expect(d.of('ScheduleRetry')).toHaveLength(1);
  });

  it('the StepTimedOut fact works like the timeout timer and disarms it', () => {
    const d = new SagaDriver(createSagaMachine(SPEC_SAGA));
    d.start();
    const r = d.feed({ type: 'StepTimedOut', step: 'lock', attempt: 1 });
    expect(r.decisions[0]).toEqual({ type: 'CancelTimer', timerId: 'mig-1:lock:1:timeout' });
    expect(r.decisions[1]).toMatchObject({ type: 'ScheduleRetry', attempt: 2 });
  });

  it('after the pivot a retriable step keeps retrying with the delay capped, and never compensates', () => {
    const d = new SagaDriver(createSagaMachine(SPEC_SAGA, { random: () => 0 }), 'mig-1', 0);
    d.runUntil('cleanup');
    for (let i = 0; i < 30; i++) {
      if (i % 2) d.timeOut();
      else d.fail({ retryable: true });
      d.fireRetry();
    }
    const delays = d.of('ScheduleRetry').map((r) => r.delayMs);
    expect(delays.slice(0, 4)).toEqual([1_000, 2_000, 4_000, 5_000]);
    expect(Math.max(...delays)).toBe(5_000);
    expect(d.state.phase).toBe(SagaPhase.Running);
    expect(d.of('SendCompensation')).toEqual([]);
    d.succeed();
    expect(d.state.phase).toBe(SagaPhase.Succeeded);
    expect(d.state.steps[4].actions).toHaveLength(31);
  });

  it('a non-retryable failure after the pivot needs an operator and rolls nothing back', () => {
    const d = new SagaDriver(createSagaMachine(SPEC_SAGA));
    d.runUntil('cleanup');
    d.fail({ retryable: false, code: 'DISK_GONE' });
    expect(d.state.phase).toBe(SagaPhase.NeedsOperator);
    expect(d.of('SendCompensation')).toEqual([]);
    expect(d.of('Finished')[0].reason).toMatch(/cleanup.*DISK_GONE.*past the point of no return/);
  });

  it('a compensation retries by its own policy', () => {
    const d = new SagaDriver(createSagaMachine(SPEC_SAGA), 'mig-1', 0);
    d.start();
    d.fail({ retryable: false });
    d.fail({ retryable: true });
    d.fireRetry();
    d.timeOut();
    expect(d.of('ScheduleRetry').map((r) => [r.kind, r.attempt, r.delayMs])).toEqual([
      [CommandKind.Compensation, 2, 100],
      [CommandKind.Compensation, 3, 100],
    ]);
    expect(d.state.steps[0].status).toBe(StepStatus.CompensationScheduled);
    expect(d.of('SendCompensation').map((c) => c.idempotencyKey)).toEqual([
      'mig-1:lock:compensate:1',
      'mig-1:lock:compensate:2',
    ]);
    d.fireRetry();
    d.succeed();
    expect(d.state.phase).toBe(SagaPhase.RolledBack);
  });
});
