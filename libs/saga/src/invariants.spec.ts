import { describe, expect, it } from 'vitest';
import { CONTAINER_MIGRATION } from './container-migration.js';
import { type SagaDefinition } from './definition.js';
import { type SagaFact } from './facts.js';
import { createSagaMachine } from './machine.js';
import { AttemptStatus, CommandKind, SagaPhase, StepStatus, isFinal } from './phases.js';
import { type SagaState, isPastPivot, mayHaveTakenEffect } from './state.js';
import { SagaDriver } from './test-driver.js';
import { SPEC_SAGA } from './test-saga.js';
import { VM_MIGRATION } from './vm-migration.js';

/** mulberry32: a tiny seeded PRNG so every failing run can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random fact: mostly answers to what is awaited, sometimes timers, stale replies, cancels. */
function randomFact(d: SagaDriver, def: SagaDefinition, rnd: () => number): [SagaFact, number] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const later = d.now + Math.floor(rnd() * 3_000);
  const error = { code: 'E', message: 'random failure' };
  const a = d.awaited();
  const roll = rnd();
  if (roll < 0.05) return [{ type: 'CancelRequested' }, later];
  if (roll < 0.15 || !a) {
    const t = d.state.timers.length ? pick(d.state.timers) : undefined;
    if (t && rnd() < 0.8) return [{ type: 'TimerFired', timerId: t.timerId }, Math.max(d.now, t.at)];
    const step = pick(def.steps).name;
    const attempt = 1 + Math.floor(rnd() * 3);
    return [
      pick<SagaFact>([
        { type: 'StepSucceeded', step, attempt },
        { type: 'StepFailed', step, attempt, retryable: rnd() < 0.5, effect: 'maybe', error },
        { type: 'CompensationSucceeded', step, attempt },
        { type: 'StepTimedOut', step, attempt },
        { type: 'Started' },
      ]),
      later,
    ];
  }
  const { step, attempt } = a;
  const retryable = rnd() < 0.7;
  if (a.kind === CommandKind.Action) {
    return [
      pick<SagaFact>([
        { type: 'StepSucceeded', step, attempt },
        { type: 'StepSucceeded', step, attempt },
        { type: 'StepFailed', step, attempt, retryable, effect: rnd() < 0.5 ? 'none' : 'maybe', error },
        { type: 'StepTimedOut', step, attempt },
      ]),
      later,
    ];
  }
  return [
    pick<SagaFact>([
      { type: 'CompensationSucceeded', step, attempt },
      { type: 'CompensationSucceeded', step, attempt },
      { type: 'CompensationSucceeded', step, attempt },
      { type: 'CompensationFailed', step, attempt, retryable, error },
      { type: 'CompensationTimedOut', step, attempt },
    ]),
    later,
  ];
}

function checkState(def: SagaDefinition, s: SagaState): void {
  const inFlight = s.steps
    .flatMap((x) => [...x.actions, ...x.compensations])
    .filter((a) => a.status === AttemptStatus.InFlight);
  expect(inFlight.length).toBeLessThanOrEqual(1);
  const phases = s.phaseHistory.map((p) => p.phase);
  expect(s.phaseHistory.map((p) => p.at)).toEqual([...s.phaseHistory.map((p) => p.at)].sort((x, y) => x - y));
  expect(phases.filter(isFinal).length).toBeLessThanOrEqual(1);
  if (phases.some(isFinal)) expect(isFinal(phases.at(-1)!)).toBe(true);
  expect(
    phases.includes(SagaPhase.Succeeded) &&
      phases.some((p) => p === SagaPhase.RolledBack || p === SagaPhase.Cancelled),
  ).toBe(false);
  const back = phases.findIndex((p) => p === SagaPhase.Compensating || p === SagaPhase.Cancelling);
  if (back >= 0) expect(phases.slice(back)).not.toContain(SagaPhase.Succeeded);
  if (back >= 0) expect(phases.slice(back)).not.toContain(SagaPhase.Running);
  if (isFinal(s.phase)) expect(s.timers).toEqual([]);
  for (const t of s.timers) {
    const step = s.steps.find((x) => x.name === t.step)!;
    const status =
      t.purpose === 'timeout'
        ? [StepStatus.InFlight, StepStatus.Compensating]
        : [StepStatus.Scheduled, StepStatus.CompensationScheduled];
    expect(status).toContain(step.status);
  }
  if (s.phase === SagaPhase.RolledBack || s.phase === SagaPhase.Cancelled) {
    s.steps.forEach((x, i) => {
      if (def.steps[i].compensation && mayHaveTakenEffect(x)) expect(x.status).toBe(StepStatus.Compensated);
    });
  }
  if (s.phase === SagaPhase.Succeeded)
    expect(s.steps.every((x) => x.status === StepStatus.Succeeded)).toBe(true);
}

function run(def: SagaDefinition, seed: number): SagaDriver {
  const rnd = prng(seed);
  const d = new SagaDriver(createSagaMachine(def, { random: rnd }), `m${seed}`, 0);
  d.start();
  for (let i = 0; i < 400 && !isFinal(d.state.phase); i++) {
    const before = d.state;
    const [fact, at] = randomFact(d, def, rnd);
    const r = d.feed(fact, at);
    expect(r.state.revision).toBe(before.revision + (r.changed ? 1 : 0));
    if (r.decisions.some((x) => x.type === 'SendAction')) expect(r.state.phase).toBe(SagaPhase.Running);
    if (fact.type === 'CancelRequested' && r.decisions[0]?.type === 'CancelRefused') {
      expect(isPastPivot(def, before) || before.phase === SagaPhase.Compensating).toBe(true);
    }
    checkState(def, d.state);
  }
  const end = d.state;
  for (let i = 0; i < 5 && isFinal(end.phase); i++)
    expect(d.feed(randomFact(d, def, rnd)[0]).state).toBe(end);
  const index = (step: string): number => def.steps.findIndex((s) => s.name === step);
  const comps = d.of('SendCompensation').map((c) => index(c.step));
  expect(comps).toEqual([...comps].sort((x, y) => y - x));
  expect(comps.every((i) => i < def.pivotIndex)).toBe(true);
  const firstComp = d.log.findIndex((x) => x.type === 'SendCompensation');
  if (firstComp >= 0) expect(d.log.slice(firstComp).some((x) => x.type === 'SendAction')).toBe(false);
  for (const i of new Set(comps)) expect(mayHaveTakenEffect(d.state.steps[i])).toBe(true);
  return d;
}

describe.each([
  ['spec', SPEC_SAGA],
  ['container', CONTAINER_MIGRATION],
  ['vm', VM_MIGRATION],
])('%s saga under random fact sequences', (_name, def) => {
  it('keeps its invariants for 300 seeded runs and reaches every kind of ending', () => {
    const endings = new Set<SagaPhase>();
    for (let seed = 1; seed <= 300; seed++) endings.add(run(def, seed).state.phase);
    expect(endings).toContain(SagaPhase.RolledBack);
    expect(endings).toContain(SagaPhase.Cancelled);
    expect(endings).toContain(SagaPhase.NeedsOperator);
  });
});
