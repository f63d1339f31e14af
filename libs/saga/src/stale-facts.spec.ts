import { describe, expect, it } from 'vitest';
import { createSagaMachine } from './machine.js';
import { SagaPhase } from './phases.js';
import { SagaDriver } from './test-driver.js';
import { SPEC_SAGA } from './test-saga.js';
import { IgnoreReason } from './transition.js';

const machine = createSagaMachine(SPEC_SAGA);

function unchanged(d: SagaDriver, fact: Parameters<SagaDriver['feed']>[0], reason: IgnoreReason): void {
  const before = d.state;
  const r = d.feed(fact);
  expect(r.changed).toBe(false);
  expect(r.state).toBe(before);
  expect(r.decisions).toEqual([]);
  expect(r.ignored?.reason).toBe(reason);
}

describe('duplicate, stale and late facts are ignored', () => {
  it('a reply delivered twice acts once', () => {
    const d = new SagaDriver(machine);
    d.start();
    d.succeed();
    unchanged(d, { type: 'StepSucceeded', step: 'lock', attempt: 1 }, IgnoreReason.NotAwaited);
    expect(d.of('SendAction').map((s) => s.step)).toEqual(['lock', 'check']);
  });

  it('a failure delivered after the success of the same attempt is ignored', () => {
    const d = new SagaDriver(machine);
    d.start();
    d.succeed();
    const error = { code: 'X', message: 'late' };
    unchanged(
      d,
      { type: 'StepFailed', step: 'lock', attempt: 1, retryable: false, effect: 'none', error },
      IgnoreReason.NotAwaited,
    );
  });

  it('a late reply after the timeout is ignored; the new attempt decides', () => {
    const d = new SagaDriver(machine);
    d.start();
    d.timeOut();
    unchanged(d, { type: 'StepSucceeded', step: 'lock', attempt: 1 }, IgnoreReason.NotAwaited);
    d.fireRetry();
    unchanged(d, { type: 'StepSucceeded', step: 'lock', attempt: 1 }, IgnoreReason.NotAwaited);
    d.feed({ type: 'StepSucceeded', step: 'lock', attempt: 2 });
    expect(d.awaited()).toMatchObject({ step: 'check', attempt: 1 });
  });

  it('a reply for an attempt not yet sent is ignored', () => {
    const d = new SagaDriver(machine);
    d.start();
    unchanged(d, { type: 'StepSucceeded', step: 'lock', attempt: 2 }, IgnoreReason.NotAwaited);
    unchanged(d, { type: 'StepSucceeded', step: 'move', attempt: 1 }, IgnoreReason.NotAwaited);
  });

  it('a timeout timer that fires after the reply is unknown', () => {
    const d = new SagaDriver(machine);
    d.start();
    d.succeed();
    unchanged(d, { type: 'TimerFired', timerId: 'mig-1:lock:1:timeout' }, IgnoreReason.UnknownTimer);
  });

  it('a StepTimedOut after the timeout timer already fired is ignored', () => {
    const d = new SagaDriver(machine);
    d.start();
    d.timeOut();
    unchanged(d, { type: 'StepTimedOut', step: 'lock', attempt: 1 }, IgnoreReason.NotAwaited);
  });

  it('a retry timer fires once', () => {
    const d = new SagaDriver(machine);
    d.start();
    d.fail({ retryable: true });
    const id = d.state.timers[0].timerId;
    d.feed({ type: 'TimerFired', timerId: id });
    unchanged(d, { type: 'TimerFired', timerId: id }, IgnoreReason.UnknownTimer);
    expect(d.of('SendAction')).toHaveLength(2);
  });

  it('a compensation reply delivered twice acts once', () => {
    const d = new SagaDriver(machine);
    d.runUntil('move');
    d.fail();
    d.succeed();
    unchanged(d, { type: 'CompensationSucceeded', step: 'move', attempt: 1 }, IgnoreReason.NotAwaited);
    expect(d.compensated()).toEqual(['move', 'lock']);
  });

  it('an action reply during rollback is not mistaken for a compensation reply', () => {
    const d = new SagaDriver(machine);
    d.runUntil('move');
    d.fail();
    unchanged(d, { type: 'StepSucceeded', step: 'move', attempt: 1 }, IgnoreReason.NotAwaited);
    expect(d.awaited()).toMatchObject({ step: 'move', kind: 'compensation' });
  });

  it('names an unknown step', () => {
    const d = new SagaDriver(machine);
    d.start();
    unchanged(d, { type: 'StepSucceeded', step: 'teleport', attempt: 1 }, IgnoreReason.UnknownStep);
  });

  it('changes nothing after the saga ended', () => {
    const d = new SagaDriver(machine);
    d.runUntil('cleanup');
    d.succeed();
    expect(d.state.phase).toBe(SagaPhase.Succeeded);
    unchanged(d, { type: 'StepSucceeded', step: 'cleanup', attempt: 1 }, IgnoreReason.SagaFinished);
    unchanged(d, { type: 'Started' }, IgnoreReason.SagaFinished);
    unchanged(d, { type: 'TimerFired', timerId: 'whatever' }, IgnoreReason.SagaFinished);
  });

  it('facts for a saga that has not started are not awaited', () => {
    const d = new SagaDriver(machine);
    unchanged(d, { type: 'StepSucceeded', step: 'lock', attempt: 1 }, IgnoreReason.NotAwaited);
    expect(d.state.phase).toBe(SagaPhase.Pending);
  });
});
