import { type Outcome, describeOutcome, recordOutcome, retryIfAllowed, sendCommand } from './commands.js';
import { StepClass } from './definition.js';
import { CommandKind, SagaPhase, StepStatus } from './phases.js';
import { mayHaveTakenEffect, movedPointOfNoReturn } from './state.js';
import { beginRollback, compensateFrom } from './rollback.js';
import { type Transition } from './transition.js';

/** `Started`: enters `Running` and sends the first step's action. */
export function start(tx: Transition): void {
  tx.setPhase(SagaPhase.Running);
  sendCommand(tx, 0, CommandKind.Action);
}

/**
 * Handles the settled action attempt of step `index`:
 * - while cancelling, whatever the outcome, compensation starts from this step;
 * - success sends the next step, or finishes `Succeeded` after the last;
 * - a retryable failure or a timeout with attempts left schedules a retry;
 * - otherwise the step gives up: before or at the pivot the saga rolls back; after it (a retriable
 *   step) there is no way back, so the saga ends `NeedsOperator`. A point of no return a result moved
 *   (post-copy, SEV) is passed once its step may have acted: every attempt of it failing with effect
 *   `none` still rolls back.
 */
export function onActionOutcome(tx: Transition, index: number, outcome: Outcome): void {
  recordOutcome(tx, index, CommandKind.Action, outcome);
  const step = tx.state.steps[index];
  if (tx.state.phase === SagaPhase.Cancelling) {
    step.status = outcome.kind === 'succeeded' ? StepStatus.Succeeded : StepStatus.Failed;
    compensateFrom(tx, index);
    return;
  }
  if (outcome.kind === 'succeeded') {
    step.status = StepStatus.Succeeded;
    if (index + 1 < tx.def.steps.length) sendCommand(tx, index + 1, CommandKind.Action);
    else tx.finish(SagaPhase.Succeeded, `all ${tx.def.steps.length} steps succeeded`);
    return;
  }
  if (retryIfAllowed(tx, index, CommandKind.Action, outcome)) return;
  step.status = StepStatus.Failed;
  const reason = describeOutcome(tx, index, CommandKind.Action, outcome);
  const moved = movedPointOfNoReturn(tx.def, tx.state);
  if (tx.def.steps[index].class === StepClass.Retriable) {
    tx.finish(SagaPhase.NeedsOperator, `${reason}; past the point of no return, nothing is rolled back`);
  } else if (moved && (index > moved.index || mayHaveTakenEffect(step))) {
    // Sent and it may have acted: the source can no longer be resumed, so nothing is undone. (The
    // moved step itself failing with no effect in any attempt left the source as it was: roll back.)
    const at = tx.def.steps[moved.index].name;
    tx.finish(
      SagaPhase.NeedsOperator,
      `${reason}; past the point of no return ("${at}" was sent: ${moved.reason}), nothing is rolled back`,
    );
  } else {
    beginRollback(tx, index, reason);
  }
}
