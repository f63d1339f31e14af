import { describe, expect, it } from 'vitest';
import { createSagaMachine } from './machine.js';
import { resumeDecisions } from './recovery.js';
import { SagaDriver } from './test-driver.js';
import { SPEC_SAGA } from './test-saga.js';

const machine = createSagaMachine(SPEC_SAGA, { random: () => 0 });

describe('resumeDecisions (a replica takes a saga over from its row)', () => {
  it('re-sends the in-flight action with the same key and re-arms its timeout', () => {
    const d = new SagaDriver(machine, 'mig-1', 0);
    d.start();
    const sent = d.succeed().decisions.filter((x) => x.type === 'SendAction' || x.type === 'SetTimeout');
    expect(resumeDecisions(SPEC_SAGA, d.state, 50)).toEqual(sent);
    expect(machine.resume(d.state, 50)).toEqual(sent);
  });

  it('re-arms a pending retry with the time still to wait', () => {
    const d = new SagaDriver(machine, 'mig-1', 0);
    d.start();
    d.fail({ retryable: true });
    expect(resumeDecisions(SPEC_SAGA, d.state, 400)).toEqual([
      expect.objectContaining({
        type: 'ScheduleRetry',
        timerId: 'mig-1:lock:2:retry',
        at: 1_000,
        delayMs: 600,
      }),
    ]);
  });

  it('re-sends an in-flight compensation', () => {
    const d = new SagaDriver(machine).runUntil('move');
    d.fail();
    expect(resumeDecisions(SPEC_SAGA, d.state, d.now)[0]).toMatchObject({
      type: 'SendCompensation',
      step: 'move',
      idempotencyKey: 'mig-1:move:compensate:1',
    });
  });

  it('has nothing to do for a Pending or a finished saga', () => {
    const d = new SagaDriver(machine);
    expect(resumeDecisions(SPEC_SAGA, d.state, 0)).toEqual([]);
    d.feed({ type: 'CancelRequested' });
    expect(resumeDecisions(SPEC_SAGA, d.state, 0)).toEqual([]);
  });
});
