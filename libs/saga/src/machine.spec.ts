import { describe, expect, it } from 'vitest';
import { DefinitionMismatchError, InvalidMigrationIdError } from './errors.js';
import { createSagaMachine } from './machine.js';
import { AttemptStatus, CommandKind, SagaPhase, StepStatus } from './phases.js';
import { mayHaveTakenEffect } from './state.js';
import { SagaDriver } from './test-driver.js';
import { SPEC_SAGA } from './test-saga.js';
import { IgnoreReason } from './transition.js';

const machine = createSagaMachine(SPEC_SAGA);

describe('saga machine: forward path', () => {
  it('creates a Pending saga with one phase-history entry and untouched steps', () => {
    const s = machine.create('mig-1', 5);
    expect(s).toMatchObject({ migrationId: 'mig-1', saga: 'spec@1', phase: SagaPhase.Pending, revision: 0 });
    expect(s.phaseHistory).toEqual([{ phase: SagaPhase.Pending, at: 5 }]);
    expect(s.steps.map((x) => x.status)).toEqual(Array(5).fill(StepStatus.NotStarted));
  });

  it('refuses a migration id that would make keys ambiguous', () => {
    expect(() => machine.create('a:b', 0)).toThrow(InvalidMigrationIdError);
  });

  it('Started sends the first action with its key and arms its timeout', () => {
    const d = new SagaDriver(machine, 'mig-1', 1_000);
    const r = d.start();
    expect(r.decisions).toEqual([
      { type: 'PhaseChanged', from: SagaPhase.Pending, to: SagaPhase.Running, at: 1_000 },
      {
        type: 'SendAction',
        step: 'lock',
        participant: 'saga-coordinator',
        command: 'lock',
        attempt: 1,
        idempotencyKey: 'mig-1:lock:1',
        timeoutMs: 1_000,
        deadlineAt: 2_000,
      },
      {
        type: 'SetTimeout',
        timerId: 'mig-1:lock:1:timeout',
        step: 'lock',
        kind: CommandKind.Action,
        attempt: 1,
        at: 2_000,
      },
    ]);
    expect(r.state.revision).toBe(1);
  });

  it('registers the compensation before the action runs: a sent action counts as "may have taken effect"', () => {
    const d = new SagaDriver(machine);
    d.start();
    expect(d.state.steps[0].status).toBe(StepStatus.InFlight);
    expect(d.state.steps[0].actions[0]).toMatchObject({ status: AttemptStatus.InFlight, effect: 'maybe' });
    expect(mayHaveTakenEffect(d.state.steps[0])).toBe(true);
  });

  it('runs every step in order and ends Succeeded with a timestamp for every phase change', () => {
    const d = new SagaDriver(machine, 'mig-1', 0);
    d.start();
    for (let i = 0; i < 5; i++)
      d.feed({ type: 'StepSucceeded', step: d.awaited()!.step, attempt: 1 }, (i + 1) * 10);
    expect(d.of('SendAction').map((x) => x.step)).toEqual(['lock', 'check', 'move', 'decide', 'cleanup']);
    expect(d.state.phase).toBe(SagaPhase.Succeeded);
    expect(d.state.phaseHistory).toEqual([
      { phase: SagaPhase.Pending, at: 0 },
      { phase: SagaPhase.Running, at: 0 },
      { phase: SagaPhase.Succeeded, at: 50, reason: 'all 5 steps succeeded' },
    ]);
    expect(d.of('Finished')).toEqual([
      { type: 'Finished', phase: SagaPhase.Succeeded, reason: 'all 5 steps succeeded' },
    ]);
    expect(d.state.timers).toEqual([]);
    expect(d.of('SendCompensation')).toEqual([]);
  });

  it('cancels each timeout timer when its reply arrives', () => {
    const d = new SagaDriver(machine);
    d.start();
    const r = d.succeed();
    expect(r.decisions[0]).toEqual({ type: 'CancelTimer', timerId: 'mig-1:lock:1:timeout' });
  });

  it('stores the reply data on the attempt record', () => {
    const d = new SagaDriver(machine);
    d.start();
    d.succeed({ lockId: 'L-7' });
    expect(d.state.steps[0].actions[0]).toMatchObject({
      status: AttemptStatus.Succeeded,
      result: { lockId: 'L-7' },
    });
  });

  it('never mutates the state it is given (the driver freezes it) and copies on every change', () => {
    const d = new SagaDriver(machine);
    const s0 = d.state;
    const json = JSON.stringify(s0);
    const r = machine.advance(s0, { type: 'Started' }, 1);
    expect(JSON.stringify(s0)).toBe(json);
    expect(r.state).not.toBe(s0);
    expect(r.state.steps[0]).not.toBe(s0.steps[0]);
  });

  it('ignores a second Started', () => {
    const d = new SagaDriver(machine);
    d.start();
    const r = d.start();
    expect(r).toMatchObject({
      changed: false,
      decisions: [],
      ignored: { reason: IgnoreReason.AlreadyStarted },
    });
  });

  it('throws DefinitionMismatchError for a state of another definition or version', () => {
    const v2 = createSagaMachine({ ...SPEC_SAGA, version: 2 }).create('mig-1', 0);
    expect(() => machine.advance(v2, { type: 'Started' }, 0)).toThrow(DefinitionMismatchError);
    const fewer = createSagaMachine({ ...SPEC_SAGA, steps: SPEC_SAGA.steps.slice(1) }).create('mig-1', 0);
    expect(() => machine.advance(fewer, { type: 'Started' }, 0)).toThrow(DefinitionMismatchError);
  });
});
