import { commandOf } from './commands.js';
import { type SagaDefinition } from './definition.js';
import { type SagaDecision } from './decisions.js';
import { AttemptStatus, CommandKind, isFinal } from './phases.js';
import { type SagaState, assertStateMatches } from './state.js';

/**
 * The decisions that re-establish what a saga is waiting for, for a coordinator replica that takes the
 * saga over from its row (after a crash, or a lost lease): the command in flight, re-sent with the same
 * attempt and idempotency key so the participant's inbox answers it once, and every armed timer.
 * Nothing for a final saga. Pure: the state is not changed and need not be written.
 *
 * @throws DefinitionMismatchError when `state` was not created from `def`.
 */
export function resumeDecisions(def: SagaDefinition, state: SagaState, now: number): SagaDecision[] {
  assertStateMatches(def, state);
  if (isFinal(state.phase)) return [];
  const out: SagaDecision[] = [];
  state.steps.forEach((step, i) => {
    for (const kind of [CommandKind.Action, CommandKind.Compensation]) {
      const last = (kind === CommandKind.Action ? step.actions : step.compensations).at(-1);
      if (last?.status !== AttemptStatus.InFlight) continue;
      const cmd = commandOf(def.steps[i], kind);
      out.push({
        type: kind === CommandKind.Action ? 'SendAction' : 'SendCompensation',
        step: step.name,
        participant: cmd.participant,
        command: cmd.command,
        attempt: last.attempt,
        idempotencyKey: last.idempotencyKey,
        timeoutMs: cmd.timeoutMs,
        deadlineAt: last.deadlineAt,
      });
    }
  });
  for (const t of state.timers) {
    const { timerId, step, kind, attempt, at } = t;
    if (t.purpose === 'timeout') out.push({ type: 'SetTimeout', timerId, step, kind, attempt, at });
    else
      out.push({ type: 'ScheduleRetry', timerId, step, kind, attempt, delayMs: Math.max(0, at - now), at });
  }
  return out;
}
