import { type CommandDefinition, type StepDefinition } from './definition.js';
import { type FailureEffect, type StepError } from './facts.js';
import { idempotencyKey, retryTimerId, timeoutTimerId } from './keys.js';
import { AttemptStatus, CommandKind, StepStatus } from './phases.js';
import { backoffDelayMs, hasAttemptsLeft } from './retry.js';
import { type AttemptRecord, type StepState, type Writable } from './state.js';
import { type Transition } from './transition.js';

/**
 * What the coordinator observed for the attempt in flight: a success reply, an error reply, or its
 * deadline passing. Shared by actions and compensations.
 */
export type Outcome =
  | { readonly kind: 'succeeded'; readonly result?: unknown }
  | {
      readonly kind: 'failed';
      readonly retryable: boolean;
      readonly effect: FailureEffect;
      readonly error: StepError;
    }
  | { readonly kind: 'timed-out' };

/** The definition of the command of `kind` for a step (compensation is only asked for when it exists). */
export function commandOf(def: StepDefinition, kind: CommandKind): CommandDefinition {
  const cmd = kind === CommandKind.Action ? def.action : def.compensation;
  if (!cmd) throw new TypeError(`step "${def.name}" has no ${kind}`);
  return cmd;
}

/** The attempt list of `kind` on a step. */
export function attemptsOf(step: Writable<StepState>, kind: CommandKind): Writable<AttemptRecord>[] {
  return kind === CommandKind.Action ? step.actions : step.compensations;
}

/**
 * Sends the next attempt of the step's action or compensation: records it as in flight (an action as
 * "may have taken effect" before it is sent), arms its timeout and emits the send decision.
 */
export function sendCommand(tx: Transition, index: number, kind: CommandKind): void {
  const def = tx.def.steps[index];
  const step = tx.state.steps[index];
  const cmd = commandOf(def, kind);
  const list = attemptsOf(step, kind);
  const attempt = list.length + 1;
  const key = idempotencyKey(tx.state.migrationId, def.name, attempt, kind);
  const deadlineAt = tx.now + cmd.timeoutMs;
  list.push({
    attempt,
    status: AttemptStatus.InFlight,
    idempotencyKey: key,
    sentAt: tx.now,
    deadlineAt,
    ...(kind === CommandKind.Action ? { effect: 'maybe' as const } : {}),
  });
  step.status = kind === CommandKind.Action ? StepStatus.InFlight : StepStatus.Compensating;
  tx.state.cursor = index;
  tx.emit({
    type: kind === CommandKind.Action ? 'SendAction' : 'SendCompensation',
    step: def.name,
    participant: cmd.participant,
    command: cmd.command,
    attempt,
    idempotencyKey: key,
    timeoutMs: cmd.timeoutMs,
    deadlineAt,
  });
  tx.arm({ timerId: timeoutTimerId(key), purpose: 'timeout', step: def.name, kind, attempt, at: deadlineAt });
}

/** Records the outcome on the in-flight attempt (the last one) and disarms its timeout. */
export function recordOutcome(
  tx: Transition,
  index: number,
  kind: CommandKind,
  outcome: Outcome,
): AttemptRecord {
  const a = attemptsOf(tx.state.steps[index], kind).at(-1)!;
  a.endedAt = tx.now;
  if (outcome.kind === 'succeeded') {
    a.status = AttemptStatus.Succeeded;
    if (kind === CommandKind.Action) a.effect = 'done';
    if (outcome.result !== undefined) a.result = outcome.result;
  } else if (outcome.kind === 'failed') {
    a.status = AttemptStatus.Failed;
    a.error = outcome.error;
    if (kind === CommandKind.Action) a.effect = outcome.effect;
  } else {
    a.status = AttemptStatus.TimedOut;
  }
  tx.disarm(timeoutTimerId(a.idempotencyKey));
  return a;
}

/**
 * When the outcome allows another attempt under the command's retry policy, arms the retry timer and
 * returns true. Timeouts are retryable; failures only when marked so.
 */
export function retryIfAllowed(tx: Transition, index: number, kind: CommandKind, outcome: Outcome): boolean {
  if (outcome.kind === 'succeeded' || (outcome.kind === 'failed' && !outcome.retryable)) return false;
  const def = tx.def.steps[index];
  const policy = commandOf(def, kind).retry;
  const made = attemptsOf(tx.state.steps[index], kind).length;
  if (!hasAttemptsLeft(policy, made)) return false;
  const timerId = retryTimerId(idempotencyKey(tx.state.migrationId, def.name, made + 1, kind));
  const delayMs = backoffDelayMs(policy, made, tx.random(timerId));
  tx.arm(
    { timerId, purpose: 'retry', step: def.name, kind, attempt: made + 1, at: tx.now + delayMs },
    delayMs,
  );
  tx.state.steps[index].status =
    kind === CommandKind.Action ? StepStatus.Scheduled : StepStatus.CompensationScheduled;
  return true;
}

/** An operator-readable account of how an attempt ended: `step "x" action attempt 2/4 timed out`. */
export function describeOutcome(tx: Transition, index: number, kind: CommandKind, outcome: Outcome): string {
  const def = tx.def.steps[index];
  const cmd = commandOf(def, kind);
  const made = attemptsOf(tx.state.steps[index], kind).length;
  const of = Number.isFinite(cmd.retry.maxAttempts) ? `/${cmd.retry.maxAttempts}` : '';
  const what = `${kind} ${cmd.participant}.${cmd.command} of step "${def.name}" (attempt ${made}${of})`;
  if (outcome.kind === 'timed-out') return `${what} timed out after ${cmd.timeoutMs} ms`;
  if (outcome.kind === 'failed') {
    const why = outcome.retryable ? '' : ' (not retryable)';
    return `${what} failed${why}: ${outcome.error.code}: ${outcome.error.message}`;
  }
  return `${what} succeeded`;
}
