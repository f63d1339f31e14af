import { type SagaDefinition, sagaId } from './definition.js';
import { DefinitionMismatchError } from './errors.js';
import { type StepError } from './facts.js';
import { assertMigrationId } from './keys.js';
import { AttemptStatus, type CommandKind, SagaPhase, StepStatus } from './phases.js';

/**
 * The saga state: plain JSON-serialisable data (numbers are epoch milliseconds), one row per saga plus
 * one per attempt in the coordinator's schema. `advance` never mutates a state it is given.
 */

/** One phase change: the phase entered, when, and why. */
export interface PhaseChange {
  readonly phase: SagaPhase;
  readonly at: number;
  readonly reason?: string;
}

/** Whether an action attempt may have changed the world; `'done'` once it succeeded. */
export type AttemptEffect = 'none' | 'maybe' | 'done';

/** One attempt of a step's action or compensation. */
export interface AttemptRecord {
  readonly attempt: number;
  readonly status: AttemptStatus;
  readonly idempotencyKey: string;
  readonly sentAt: number;
  readonly deadlineAt: number;
  readonly endedAt?: number;
  readonly error?: StepError;
  /** Actions only: set to `'maybe'` the moment the attempt is sent (compensation registered first). */
  readonly effect?: AttemptEffect;
  /** Actions only: the success reply's data. */
  readonly result?: unknown;
}

/** One step: where it stands and every attempt of its action and compensation. */
export interface StepState {
  readonly name: string;
  readonly status: StepStatus;
  readonly actions: readonly AttemptRecord[];
  readonly compensations: readonly AttemptRecord[];
}

/** A timer the engine is waiting for (mirrors the `SetTimeout`/`ScheduleRetry` decisions). */
export interface ArmedTimer {
  readonly timerId: string;
  readonly purpose: 'timeout' | 'retry';
  readonly step: string;
  readonly kind: CommandKind;
  readonly attempt: number;
  readonly at: number;
}

/** The whole state of one saga run. */
export interface SagaState {
  readonly migrationId: string;
  /** `name@version` of the definition it runs (see `sagaId`). */
  readonly saga: string;
  readonly phase: SagaPhase;
  readonly phaseHistory: readonly PhaseChange[];
  /** The latest reason: the failure or cancel that started a rollback, or why it ended. */
  readonly reason?: string;
  /** Index of the step in focus: the one running forward, or the one being compensated. */
  readonly cursor: number;
  readonly steps: readonly StepState[];
  readonly timers: readonly ArmedTimer[];
  /** Incremented on every applied fact: use it for optimistic concurrency on the saga row. */
  readonly revision: number;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** A mutable view of `T`, for the engine's private working copy. */
export type Writable<T> = T extends readonly (infer U)[]
  ? Writable<U>[]
  : T extends object
    ? { -readonly [K in keyof T]: Writable<T[K]> }
    : T;

/** A new saga in `Pending`; persist it, then feed `Started`. @throws InvalidMigrationIdError */
export function createSagaState(def: SagaDefinition, migrationId: string, now: number): SagaState {
  assertMigrationId(migrationId);
  return {
    migrationId,
    saga: sagaId(def),
    phase: SagaPhase.Pending,
    phaseHistory: [{ phase: SagaPhase.Pending, at: now }],
    cursor: 0,
    steps: def.steps.map((s) => ({
      name: s.name,
      status: StepStatus.NotStarted,
      actions: [],
      compensations: [],
    })),
    timers: [],
    revision: 0,
    createdAt: now,
    updatedAt: now,
  };
}

/** @throws DefinitionMismatchError when `state` was not created from `def`. */
export function assertStateMatches(def: SagaDefinition, state: SagaState): void {
  const names = state.steps.map((s) => s.name).join(',');
  if (state.saga !== sagaId(def) || names !== def.steps.map((s) => s.name).join(',')) {
    throw new DefinitionMismatchError(sagaId(def), `${state.saga} [${names}]`);
  }
}

/**
 * True when any action attempt of the step was sent and is not known to have done nothing. This is the
 * "compensation registered before the action runs" rule: a sent, timed-out or ambiguously failed attempt
 * counts; only failures reported with `effect: 'none'` do not.
 */
export function mayHaveTakenEffect(step: StepState): boolean {
  return step.actions.some((a) => a.effect !== 'none');
}

/**
 * The result key by which a succeeded action says that the saga's next step, once sent, cannot be
 * undone (libs/contracts `COMMITS_NEXT_STEP`; its value is why). Used by the VM saga's converge step
 * when the migration switched to post-copy (letting the destination run splits the guest's memory
 * between the hosts) and for an SEV guest (switch-over ends with SEND_FINISH, which leaves the source's
 * guest context SENT): either way the source can never resume after `switch-over` is sent.
 */
export const COMMITS_NEXT_STEP = 'commitsNextStep';

/** A point of no return a step's result moved before the definition's pivot: that step and why. */
export interface MovedPointOfNoReturn {
  readonly index: number;
  readonly reason: string;
}

/** The earliest step a succeeded action's result marked as the point of no return, if any. */
export function movedPointOfNoReturn(
  def: SagaDefinition,
  state: SagaState,
): MovedPointOfNoReturn | undefined {
  for (let i = 0; i + 1 < def.pivotIndex; i++) {
    for (const a of state.steps[i].actions) {
      const why = (a.result as Record<string, unknown> | undefined)?.[COMMITS_NEXT_STEP];
      if (a.status === AttemptStatus.Succeeded && typeof why === 'string')
        return { index: i + 1, reason: why };
    }
  }
  return undefined;
}

/**
 * The step whose sending is the point of no return: the definition's pivot, or an earlier step a
 * result moved it to (see {@link movedPointOfNoReturn}).
 */
export function pointOfNoReturn(def: SagaDefinition, state: SagaState): number {
  return movedPointOfNoReturn(def, state)?.index ?? def.pivotIndex;
}

/** True once the point of no return has been sent: cancellation is refused from then on. */
export function isPastPivot(def: SagaDefinition, state: SagaState): boolean {
  return state.steps[pointOfNoReturn(def, state)].actions.length > 0;
}
