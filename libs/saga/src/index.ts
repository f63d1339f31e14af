/**
 * libs/saga: the pure saga engine. Definitions (`defineSaga`, the container and VM migration sagas),
 * one transition function (`createSagaMachine(...).advance`) from observed facts to a new state and
 * decisions, and the typed errors. No I/O: the saga-coordinator persists and executes.
 */
export * from './errors.js';
export { SagaPhase, type FinalPhase, isFinal, StepStatus, AttemptStatus, CommandKind } from './phases.js';
export {
  Participant,
  StepClass,
  type RetryPolicy,
  type CommandDefinition,
  type StepDefinition,
  type SagaDefinition,
  type CompensationSpec,
  type StepSpec,
  type SagaSpec,
  sagaId,
} from './definition.js';
export { defineSaga, defaultRetryFor } from './define-saga.js';
export * from './defaults.js';
export { type RandomSource, hashedRandom, backoffDelayMs, hasAttemptsLeft } from './retry.js';
export {
  type IdempotencyKeyParts,
  idempotencyKey,
  parseIdempotencyKey,
  timeoutTimerId,
  retryTimerId,
} from './keys.js';
export type * from './facts.js';
export { CancelRefusalReason } from './decisions.js';
export type {
  SendAction,
  SendCompensation,
  SetTimeout,
  ScheduleRetry,
  CancelTimer,
  PhaseChanged,
  CancelRefused,
  Finished,
  SagaDecision,
} from './decisions.js';
export {
  type PhaseChange,
  type AttemptEffect,
  type AttemptRecord,
  type StepState,
  type ArmedTimer,
  type SagaState,
  createSagaState,
  mayHaveTakenEffect,
  isPastPivot,
  COMMITS_NEXT_STEP,
  type MovedPointOfNoReturn,
  movedPointOfNoReturn,
  pointOfNoReturn,
} from './state.js';
export { IgnoreReason, type AdvanceResult } from './transition.js';
export { DEFAULT_CANCEL_REASON } from './rollback.js';
export { resumeDecisions } from './recovery.js';
export { type SagaMachine, type SagaMachineOptions, createSagaMachine } from './machine.js';
export { ContainerStep, CONTAINER_STEP_TIMEOUT_MS, CONTAINER_MIGRATION } from './container-migration.js';
export { VmStep, VM_STEP_TIMEOUT_MS, VM_MIGRATION } from './vm-migration.js';
