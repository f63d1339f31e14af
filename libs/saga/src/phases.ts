/**
 * Phases of one saga run. Stored as these strings in the coordinator's saga row; never renumbered.
 * The engine moves between them only in `advance`, and records each change in the phase history.
 */
export enum SagaPhase {
  /** Created and persisted; nothing has been sent yet. Waits for the `Started` fact. */
  Pending = 'Pending',
  /** Running the actions forward, one step at a time. */
  Running = 'Running',
  /** A step before the point of no return gave up; compensations run in reverse order. */
  Compensating = 'Compensating',
  /** Cancel accepted: the in-flight action is allowed to settle, then compensations run in reverse. */
  Cancelling = 'Cancelling',
  /** Final: every step succeeded; the workload lives on the target. */
  Succeeded = 'Succeeded',
  /** Final: a failure before the point of no return was fully compensated; the source is back. */
  RolledBack = 'RolledBack',
  /** Final: a cancel request was fully compensated (or arrived before anything was sent). */
  Cancelled = 'Cancelled',
  /** Final: the engine can go neither forward nor back; a human must look. The reason is recorded. */
  NeedsOperator = 'NeedsOperator',
}

/** The phases after which the engine changes nothing more. */
export type FinalPhase =
  SagaPhase.Succeeded | SagaPhase.RolledBack | SagaPhase.Cancelled | SagaPhase.NeedsOperator;

const FINAL_PHASES: ReadonlySet<SagaPhase> = new Set([
  SagaPhase.Succeeded,
  SagaPhase.RolledBack,
  SagaPhase.Cancelled,
  SagaPhase.NeedsOperator,
]);

/** True for phases no fact can leave: the coordinator may stop leasing the saga. */
export function isFinal(phase: SagaPhase): phase is FinalPhase {
  return FINAL_PHASES.has(phase);
}

/** Where one step stands, covering both its action and its compensation. */
export enum StepStatus {
  /** The action has never been sent. */
  NotStarted = 'NotStarted',
  /** An action attempt failed or timed out; the next attempt waits for its retry timer. */
  Scheduled = 'Scheduled',
  /** An action attempt was sent; its reply or timeout is awaited. The step may have taken effect. */
  InFlight = 'InFlight',
  /** The action succeeded. */
  Succeeded = 'Succeeded',
  /** The action gave up: non-retryable error, attempts exhausted, or cancelled while waiting to retry. */
  Failed = 'Failed',
  /** A compensation attempt was sent; its reply or timeout is awaited. */
  Compensating = 'Compensating',
  /** A compensation attempt failed or timed out; the next attempt waits for its retry timer. */
  CompensationScheduled = 'CompensationScheduled',
  /** The compensation succeeded: the step's effect is undone. */
  Compensated = 'Compensated',
  /** The compensation gave up; the saga went to NeedsOperator. */
  CompensationFailed = 'CompensationFailed',
}

/** Outcome of one attempt of an action or a compensation. */
export enum AttemptStatus {
  /** Sent; neither a reply nor the timeout has been observed. */
  InFlight = 'InFlight',
  /** The participant replied with success. */
  Succeeded = 'Succeeded',
  /** The participant replied with an error. */
  Failed = 'Failed',
  /** No reply before the deadline; the command may still have taken effect. */
  TimedOut = 'TimedOut',
}

/** Which of a step's two commands an attempt, timer or idempotency key belongs to. */
export enum CommandKind {
  /** The forward action. */
  Action = 'action',
  /** The compensation that undoes the action. */
  Compensation = 'compensation',
}
