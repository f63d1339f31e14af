/**
 * Facts: what the coordinator observed. They are the only input of `advance`. A fact names the step and
 * the attempt it answers (both are in the idempotency key the coordinator sent), so a reply to an old
 * attempt, a duplicate reply or a reply after a timeout is recognised and ignored.
 */

/** An error as a participant reported it (the `ErrorPayload` of libs/contracts minus `retryable`). */
export interface StepError {
  readonly code: string;
  readonly message: string;
  readonly details?: Readonly<Record<string, unknown>>;
}

/**
 * Whether a failed action may have changed anything. `'none'`: the participant knows it did nothing
 * (validation refused, precondition unmet), so no compensation is needed for this attempt. `'maybe'`: it
 * may have acted; the step will be compensated on rollback. Timeouts always count as `'maybe'`.
 */
export type FailureEffect = 'none' | 'maybe';

/** The coordinator persisted the saga and wants it to run. */
export interface StartedFact {
  readonly type: 'Started';
}

/** The participant replied success to action attempt `attempt` of `step`. */
export interface StepSucceededFact {
  readonly type: 'StepSucceeded';
  readonly step: string;
  readonly attempt: number;
  /**
   * Reply data later steps need (ids, sizes); JSON. Stored on the attempt record; the engine reads
   * only its `commitsNextStep` (see `movedPointOfNoReturn`).
   */
  readonly result?: unknown;
}

/** The participant replied with an error to action attempt `attempt` of `step`. */
export interface StepFailedFact {
  readonly type: 'StepFailed';
  readonly step: string;
  readonly attempt: number;
  /** False stops retries at once (the `retryable` of the error payload). */
  readonly retryable: boolean;
  readonly effect: FailureEffect;
  readonly error: StepError;
}

/** No reply to action attempt `attempt` of `step` before its deadline (e.g. the NATS request timed out). */
export interface StepTimedOutFact {
  readonly type: 'StepTimedOut';
  readonly step: string;
  readonly attempt: number;
}

/** The participant replied success to compensation attempt `attempt` of `step`. */
export interface CompensationSucceededFact {
  readonly type: 'CompensationSucceeded';
  readonly step: string;
  readonly attempt: number;
}

/** The participant replied with an error to compensation attempt `attempt` of `step`. */
export interface CompensationFailedFact {
  readonly type: 'CompensationFailed';
  readonly step: string;
  readonly attempt: number;
  readonly retryable: boolean;
  readonly error: StepError;
}

/** No reply to compensation attempt `attempt` of `step` before its deadline. Retried like a failure. */
export interface CompensationTimedOutFact {
  readonly type: 'CompensationTimedOut';
  readonly step: string;
  readonly attempt: number;
}

/** A `ccm.req.cancel` arrived for this migration. */
export interface CancelRequestedFact {
  readonly type: 'CancelRequested';
  /** Why, for the phase history (e.g. "operator asked"). */
  readonly reason?: string;
}

/** A timer the engine asked for (`SetTimeout` or `ScheduleRetry`) came due. */
export interface TimerFiredFact {
  readonly type: 'TimerFired';
  readonly timerId: string;
}

/** Everything `advance` accepts. */
export type SagaFact =
  | StartedFact
  | StepSucceededFact
  | StepFailedFact
  | StepTimedOutFact
  | CompensationSucceededFact
  | CompensationFailedFact
  | CompensationTimedOutFact
  | CancelRequestedFact
  | TimerFiredFact;

/** The `type` strings of every fact. */
export type SagaFactType = SagaFact['type'];
