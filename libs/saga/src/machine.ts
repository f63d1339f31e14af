import { type Outcome, sendCommand } from './commands.js';
import { type SagaDefinition } from './definition.js';
import { type CancelRefused, type SagaDecision } from './decisions.js';
import { type SagaFact } from './facts.js';
import { onActionOutcome, start } from './forward.js';
import { AttemptStatus, CommandKind, SagaPhase, isFinal } from './phases.js';
import { resumeDecisions } from './recovery.js';
import { type RandomSource, hashedRandom } from './retry.js';
import { DEFAULT_CANCEL_REASON, cancelRefusal, onCompensationOutcome, requestCancel } from './rollback.js';
import { type SagaState, assertStateMatches, createSagaState } from './state.js';
import { type AdvanceResult, IgnoreReason, Transition, ignored } from './transition.js';

/** Injected dependencies of a machine. */
export interface SagaMachineOptions {
  /** Jitter source for retry delays; defaults to `hashedRandom` (deterministic per timer id). */
  readonly random?: RandomSource;
}

/**
 * The saga engine for one definition: a deterministic state machine driven by observed facts.
 * The coordinator loads the state row, calls `advance`, writes the new state when `changed` (with the
 * decisions, in one transaction) and then executes the decisions.
 */
export interface SagaMachine {
  readonly definition: SagaDefinition;
  /** A new `Pending` state for `migrationId` at `now` (epoch ms). */
  create(migrationId: string, now: number): SagaState;
  /**
   * Applies one fact observed at `now` (epoch ms) to a copy of `state` and returns the new state and
   * the decisions. Never mutates `state`; returns it unchanged (same object, `changed: false`) for
   * ignored facts and refused cancels. Throws only `DefinitionMismatchError` (a programming error).
   */
  advance(state: SagaState, fact: SagaFact, now: number): AdvanceResult;
  /** The refusal a cancel request would get now, or undefined when it would be accepted. */
  cancelRefusal(state: SagaState): CancelRefused | undefined;
  /** What to re-issue when taking the saga over from its row: see `resumeDecisions`. */
  resume(state: SagaState, now: number): SagaDecision[];
}

/** Builds the machine for a validated definition (see `defineSaga`). */
export function createSagaMachine(definition: SagaDefinition, options: SagaMachineOptions = {}): SagaMachine {
  const random = options.random ?? hashedRandom;
  return {
    definition,
    create: (migrationId, now) => createSagaState(definition, migrationId, now),
    advance: (state, fact, now) => advance(definition, random, state, fact, now),
    cancelRefusal: (state) => cancelRefusal(definition, state),
    resume: (state, now) => resumeDecisions(definition, state, now),
  };
}

function advance(
  def: SagaDefinition,
  random: RandomSource,
  state: SagaState,
  fact: SagaFact,
  now: number,
): AdvanceResult {
  assertStateMatches(def, state);
  const tx = (): Transition => new Transition(def, state, now, random);

  if (fact.type === 'CancelRequested') {
    const refusal = cancelRefusal(def, state);
    if (refusal) return { state, decisions: [refusal], changed: false };
    if (state.phase === SagaPhase.Cancelling) {
      return ignored(
        state,
        IgnoreReason.AlreadyCancelling,
        `migration ${state.migrationId} is already cancelling`,
      );
    }
    const t = tx();
    requestCancel(t, fact.reason ?? DEFAULT_CANCEL_REASON);
    return t.result();
  }
  if (isFinal(state.phase)) {
    return ignored(state, IgnoreReason.SagaFinished, `${fact.type} after the saga ended ${state.phase}`);
  }

  switch (fact.type) {
    case 'Started': {
      if (state.phase !== SagaPhase.Pending) {
        return ignored(state, IgnoreReason.AlreadyStarted, `saga is already ${state.phase}`);
      }
      const t = tx();
      start(t);
      return t.result();
    }
    case 'StepSucceeded':
      return settle(CommandKind.Action, fact, { kind: 'succeeded', result: fact.result });
    case 'StepFailed':
      return settle(CommandKind.Action, fact, {
        kind: 'failed',
        retryable: fact.retryable,
        effect: fact.effect,
        error: fact.error,
      });
    case 'StepTimedOut':
      return settle(CommandKind.Action, fact, { kind: 'timed-out' });
    case 'CompensationSucceeded':
      return settle(CommandKind.Compensation, fact, { kind: 'succeeded' });
    case 'CompensationFailed':
      return settle(CommandKind.Compensation, fact, {
        kind: 'failed',
        retryable: fact.retryable,
        effect: 'maybe',
        error: fact.error,
      });
    case 'CompensationTimedOut':
      return settle(CommandKind.Compensation, fact, { kind: 'timed-out' });
    case 'TimerFired':
      return timerFired(fact.timerId);
  }

  function settle(
    kind: CommandKind,
    ref: { step: string; attempt: number },
    outcome: Outcome,
  ): AdvanceResult {
    const found = awaited(kind, ref.step, ref.attempt);
    if (typeof found !== 'number') return found;
    const t = tx();
    handle(t, kind, found, outcome);
    return t.result();
  }

  function timerFired(timerId: string): AdvanceResult {
    const timer = state.timers.find((x) => x.timerId === timerId);
    if (!timer) return ignored(state, IgnoreReason.UnknownTimer, `timer ${timerId} is not armed`);
    const index = def.steps.findIndex((s) => s.name === timer.step);
    if (timer.purpose === 'timeout') {
      const found = awaited(timer.kind, timer.step, timer.attempt);
      if (typeof found !== 'number') return found;
    }
    const t = tx();
    t.consumeTimer(timerId);
    if (timer.purpose === 'timeout') handle(t, timer.kind, index, { kind: 'timed-out' });
    else sendCommand(t, index, timer.kind);
    return t.result();
  }

  /** The index of the step whose attempt `attempt` of `kind` is in flight, or the ignore result. */
  function awaited(kind: CommandKind, step: string, attempt: number): number | AdvanceResult {
    const index = def.steps.findIndex((s) => s.name === step);
    if (index < 0) return ignored(state, IgnoreReason.UnknownStep, `no step "${step}" in ${state.saga}`);
    const s = state.steps[index];
    const last = (kind === CommandKind.Action ? s.actions : s.compensations).at(-1);
    if (last?.attempt === attempt && last.status === AttemptStatus.InFlight) return index;
    const now = last ? `attempt ${last.attempt} is ${last.status}` : 'none was sent';
    return ignored(
      state,
      IgnoreReason.NotAwaited,
      `${kind} attempt ${attempt} of step "${step}" not awaited: ${now}`,
    );
  }
}

function handle(t: Transition, kind: CommandKind, index: number, outcome: Outcome): void {
  if (kind === CommandKind.Action) onActionOutcome(t, index, outcome);
  else onCompensationOutcome(t, index, outcome);
}
