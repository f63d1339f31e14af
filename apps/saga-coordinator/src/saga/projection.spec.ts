import { CONTAINER_MIGRATION, createSagaMachine, type SagaFact, type SagaState } from '@ccm/saga';
import { describe, expect, it } from 'vitest';
import { changedAttempts, eventsOf, wakeAt } from './projection.js';

const machine = createSagaMachine(CONTAINER_MIGRATION);

function step(state: SagaState, fact: SagaFact, now: number) {
  const r = machine.advance(state, fact, now);
  return { ...r, events: eventsOf(CONTAINER_MIGRATION, state, r.state, r.decisions) };
}

describe('projection of a state change', () => {
  it('starts with the phase change and the first command', () => {
    const s0 = machine.create('mig-1', 1000);
    const { events, state } = step(s0, { type: 'Started' }, 1000);
    expect(events.map((e) => e.name)).toEqual(['phase-changed', 'step-started']);
    expect(events[1].data).toMatchObject({ step: 'admit', participant: 'saga-coordinator', attempt: 1 });
    expect(wakeAt(state)).toBe(1000 + CONTAINER_MIGRATION.steps[0].action.timeoutMs);
    expect(changedAttempts(CONTAINER_MIGRATION, s0, state)).toHaveLength(1);
  });

  it('reports how long a step took and what it failed with, then the rollback', () => {
    let s = step(machine.create('mig-1', 0), { type: 'Started' }, 0).state;
    s = step(s, { type: 'StepSucceeded', step: 'admit', attempt: 1 }, 5).state;
    const r = step(
      s,
      {
        type: 'StepFailed',
        step: 'attest-target',
        attempt: 1,
        retryable: false,
        effect: 'none',
        error: { code: 'NOSEND', message: 'policy forbids migration' },
      },
      47,
    );
    expect(r.events.map((e) => e.name)).toEqual(['step-failed', 'phase-changed', 'compensation-started']);
    expect(r.events[0].data).toMatchObject({
      step: 'attest-target',
      durationMs: 42,
      effect: 'none',
      error: { code: 'NOSEND', message: 'policy forbids migration' },
    });
    const end = step(r.state, { type: 'CompensationSucceeded', step: 'admit', attempt: 1 }, 50);
    expect(end.events.map((e) => e.name)).toEqual(['compensation-succeeded', 'phase-changed', 'finished']);
    expect(end.events[2].data).toMatchObject({ phase: 'RolledBack', durationMs: 50 });
    expect(wakeAt(end.state)).toBeNull();
  });

  it('announces retries', () => {
    let s = step(machine.create('mig-1', 0), { type: 'Started' }, 0).state;
    s = step(s, { type: 'StepSucceeded', step: 'admit', attempt: 1 }, 1).state;
    const r = step(s, { type: 'StepTimedOut', step: 'attest-target', attempt: 1 }, 2);
    expect(r.events.map((e) => e.name)).toEqual(['step-timed-out', 'retry-scheduled']);
    expect(r.events[1].data).toMatchObject({ step: 'attest-target', kind: 'action', attempt: 2 });
  });
});
