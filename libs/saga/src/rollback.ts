import { type SagaDefinition, type StepDefinition } from './definition.js';
import { CancelRefusalReason, type CancelRefused } from './decisions.js';
import { type Outcome, describeOutcome, recordOutcome, retryIfAllowed, sendCommand } from './commands.js';
import { CommandKind, SagaPhase, StepStatus, isFinal } from './phases.js';
import {
  type SagaState,
  type StepState,
  isPastPivot,
  mayHaveTakenEffect,
  movedPointOfNoReturn,
} from './state.js';
import { type Transition } from './transition.js';

/** Default reason recorded when a cancel request carries none. */
export const DEFAULT_CANCEL_REASON = 'cancel requested';

/**
 * Why a cancel request would be refused right now, or undefined when it would be accepted. Cancels are
 * refused once the pivot has been sent, while a failure is already being rolled back, and after the end.
 * (A cancel during `Cancelling` is accepted as a no-op.)
 */
export function cancelRefusal(def: SagaDefinition, state: SagaState): CancelRefused | undefined {
  const refuse = (reason: CancelRefusalReason, message: string): CancelRefused => ({
    type: 'CancelRefused',
    reason,
    message,
  });
  if (isFinal(state.phase)) {
    return refuse(
      CancelRefusalReason.AlreadyFinished,
      `migration ${state.migrationId} already ended ${state.phase}`,
    );
  }
  if (state.phase === SagaPhase.Compensating) {
    return refuse(
      CancelRefusalReason.AlreadyRollingBack,
      `migration ${state.migrationId} is already rolling back: ${state.reason ?? 'a step failed'}`,
    );
  }
  if (state.phase === SagaPhase.Running && isPastPivot(def, state)) {
    const moved = movedPointOfNoReturn(def, state);
    const pivot = def.steps[moved?.index ?? def.pivotIndex].name;
    return refuse(
      CancelRefusalReason.PastPointOfNoReturn,
      `migration ${state.migrationId} is past the point of no return (step "${pivot}" was sent` +
        `${moved ? `: ${moved.reason}` : ''}); it can only complete`,
    );
  }
  return undefined;
}

/**
 * Accepts a cancel (the caller checked `cancelRefusal`). Before `Started` the saga just ends Cancelled.
 * While running, it enters `Cancelling`: a step waiting for a retry is abandoned and compensation begins
 * at once; an action in flight is left to settle (reply or timeout) first, because a compensation sent
 * alongside its action could overtake it and undo nothing.
 */
export function requestCancel(tx: Transition, reason: string): void {
  if (tx.state.phase === SagaPhase.Pending) {
    tx.finish(SagaPhase.Cancelled, `cancelled before start: ${reason}`);
    return;
  }
  tx.setPhase(SagaPhase.Cancelling, reason);
  const index = tx.state.cursor;
  const step = tx.state.steps[index];
  if (step.status === StepStatus.InFlight && tx.def.steps[index].interruptible) {
    // It only waits: abandon it (its late reply is then not awaited) and undo what it waited on.
    recordOutcome(tx, index, CommandKind.Action, {
      kind: 'failed',
      retryable: false,
      effect: 'none',
      error: { code: 'ABANDONED', message: `abandoned by the cancel: ${reason}` },
    });
    step.status = StepStatus.Failed;
    compensateFrom(tx, index);
    return;
  }
  if (step.status !== StepStatus.Scheduled) return;
  for (const t of tx.state.timers.filter((t) => t.step === step.name && t.purpose === 'retry')) {
    tx.disarm(t.timerId);
  }
  step.status = StepStatus.Failed;
  compensateFrom(tx, index);
}

/** Enters `Compensating` because of `reason` and compensates from step `from` downwards. */
export function beginRollback(tx: Transition, from: number, reason: string): void {
  tx.setPhase(SagaPhase.Compensating, reason);
  compensateFrom(tx, from);
}

/** Compensates, in reverse order from `from`, every step that may have taken effect. */
export function compensateFrom(tx: Transition, from: number): void {
  for (let i = from; i >= 0; i--) {
    if (needsCompensation(tx.def.steps[i], tx.state.steps[i])) {
      sendCommand(tx, i, CommandKind.Compensation);
      return;
    }
  }
  const cause = tx.state.reason ?? 'no reason recorded';
  if (tx.state.phase === SagaPhase.Cancelling) tx.finish(SagaPhase.Cancelled, `cancelled: ${cause}`);
  else tx.finish(SagaPhase.RolledBack, `rolled back: ${cause}`);
}

/** Handles the settled compensation attempt of step `index`: next compensation, retry, or operator. */
export function onCompensationOutcome(tx: Transition, index: number, outcome: Outcome): void {
  recordOutcome(tx, index, CommandKind.Compensation, outcome);
  const step = tx.state.steps[index];
  if (outcome.kind === 'succeeded') {
    step.status = StepStatus.Compensated;
    compensateFrom(tx, index - 1);
    return;
  }
  if (retryIfAllowed(tx, index, CommandKind.Compensation, outcome)) return;
  step.status = StepStatus.CompensationFailed;
  const left = tx.def.steps
    .slice(0, index)
    .filter((d, i) => needsCompensation(d, tx.state.steps[i]))
    .map((d) => d.name)
    .reverse();
  const rest = left.length ? `still to compensate: ${left.join(', ')}` : 'nothing else left to compensate';
  const why = describeOutcome(tx, index, CommandKind.Compensation, outcome);
  tx.finish(
    SagaPhase.NeedsOperator,
    `${why}; rollback stopped, ${rest}; rolling back because: ${tx.state.reason}`,
  );
}

function needsCompensation(def: StepDefinition, step: StepState): boolean {
  return def.compensation !== undefined && step.status !== StepStatus.Compensated && mayHaveTakenEffect(step);
}
