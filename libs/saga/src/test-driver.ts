import { type SagaDecision } from './decisions.js';
import { type FailureEffect, type SagaFact } from './facts.js';
import { type SagaMachine } from './machine.js';
import { AttemptStatus, CommandKind } from './phases.js';
import { type SagaState } from './state.js';
import { type AdvanceResult } from './transition.js';

/** The command attempt the saga is waiting on. */
export interface Awaited {
  readonly kind: CommandKind;
  readonly step: string;
  readonly attempt: number;
  readonly deadlineAt: number;
}

/**
 * Plays the coordinator and the participants around a machine in specs: feeds facts, keeps the clock,
 * logs every decision, and deep-freezes each state before handing it to `advance`, so any mutation of
 * the input throws. Not exported from the library.
 */
export class SagaDriver {
  state: SagaState;
  now: number;
  readonly log: SagaDecision[] = [];

  constructor(
    readonly machine: SagaMachine,
    migrationId = 'mig-1',
    start = 1_000_000,
  ) {
    this.now = start;
    this.state = machine.create(migrationId, start);
  }

  feed(fact: SagaFact, at = this.now): AdvanceResult {
    this.now = at;
    const before = deepFreeze(this.state);
    const result = this.machine.advance(before, fact, this.now);
    if (!result.changed && result.state !== before) throw new Error('unchanged result must return the input');
    this.state = result.state;
    this.log.push(...result.decisions);
    return result;
  }

  start(): AdvanceResult {
    return this.feed({ type: 'Started' });
  }

  /** The attempt in flight, if any (at most one at a time). */
  awaited(): Awaited | undefined {
    for (const s of this.state.steps) {
      for (const [kind, list] of [
        [CommandKind.Action, s.actions],
        [CommandKind.Compensation, s.compensations],
      ] as const) {
        const a = list.at(-1);
        if (a?.status === AttemptStatus.InFlight) {
          return { kind, step: s.name, attempt: a.attempt, deadlineAt: a.deadlineAt };
        }
      }
    }
    return undefined;
  }

  private must(): Awaited {
    const a = this.awaited();
    if (!a) throw new Error(`nothing in flight (phase ${this.state.phase})`);
    return a;
  }

  succeed(result?: unknown): AdvanceResult {
    const { kind, step, attempt } = this.must();
    return this.feed(
      kind === CommandKind.Action
        ? { type: 'StepSucceeded', step, attempt, result }
        : { type: 'CompensationSucceeded', step, attempt },
    );
  }

  fail(opts: { retryable?: boolean; effect?: FailureEffect; code?: string } = {}): AdvanceResult {
    const { kind, step, attempt } = this.must();
    const error = { code: opts.code ?? 'BOOM', message: `${step} broke` };
    const retryable = opts.retryable ?? false;
    return this.feed(
      kind === CommandKind.Action
        ? { type: 'StepFailed', step, attempt, retryable, effect: opts.effect ?? 'maybe', error }
        : { type: 'CompensationFailed', step, attempt, retryable, error },
    );
  }

  /** Lets the in-flight attempt's timeout timer fire at its deadline. */
  timeOut(): AdvanceResult {
    const a = this.must();
    const timer = this.state.timers.find(
      (t) => t.purpose === 'timeout' && t.step === a.step && t.kind === a.kind && t.attempt === a.attempt,
    );
    if (!timer) throw new Error(`no timeout timer for ${a.step}`);
    return this.feed({ type: 'TimerFired', timerId: timer.timerId }, timer.at);
  }

  /** Fires the earliest armed retry timer at its due time. */
  fireRetry(): AdvanceResult {
    const timer = [...this.state.timers].filter((t) => t.purpose === 'retry').sort((a, b) => a.at - b.at)[0];
    if (!timer) throw new Error('no retry timer armed');
    return this.feed({ type: 'TimerFired', timerId: timer.timerId }, timer.at);
  }

  /** Replies success to every action until `step`'s action is the one in flight. */
  runUntil(step: string): this {
    if (!this.awaited()) this.start();
    while (this.must().step !== step) this.succeed();
    return this;
  }

  /** Steps whose compensation was sent (first attempts only), in send order. */
  compensated(): string[] {
    return this.log.flatMap((d) => (d.type === 'SendCompensation' && d.attempt === 1 ? [d.step] : []));
  }

  of<T extends SagaDecision['type']>(type: T): Extract<SagaDecision, { type: T }>[] {
    return this.log.filter((d): d is Extract<SagaDecision, { type: T }> => d.type === type);
  }
}

/** Freezes a value and everything reachable from it. */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
