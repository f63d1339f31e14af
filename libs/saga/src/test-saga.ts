import { defineSaga } from './define-saga.js';
import { Participant, type RetryPolicy, type SagaDefinition, StepClass } from './definition.js';

/** Retry policy of the spec saga: 1 s, 2 s, 4 s, capped at 5 s, four attempts, half jitter. */
export const SPEC_RETRY: RetryPolicy = {
  baseDelayMs: 1_000,
  factor: 2,
  maxDelayMs: 5_000,
  maxAttempts: 4,
  jitterRatio: 0.5,
};

/** Compensation retry policy of the spec saga: three attempts, 100 ms apart. */
export const SPEC_COMPENSATION_RETRY: RetryPolicy = {
  baseDelayMs: 100,
  factor: 1,
  maxDelayMs: 100,
  maxAttempts: 3,
};

/**
 * A small saga for engine specs: `lock` (compensable), `check` (compensable, nothing to undo),
 * `move` (compensable), `decide` (pivot), `cleanup` (retriable, capped at 5 s, unbounded attempts).
 */
export const SPEC_SAGA: SagaDefinition = defineSaga({
  name: 'spec',
  version: 1,
  steps: [
    {
      name: 'lock',
      class: StepClass.Compensable,
      participant: Participant.Coordinator,
      action: 'lock',
      timeoutMs: 1_000,
      retry: SPEC_RETRY,
      compensation: { command: 'unlock', retry: SPEC_COMPENSATION_RETRY, timeoutMs: 500 },
    },
    {
      name: 'check',
      class: StepClass.Compensable,
      participant: Participant.KeyBroker,
      action: 'check',
      timeoutMs: 1_000,
      retry: SPEC_RETRY,
    },
    {
      name: 'move',
      class: StepClass.Compensable,
      participant: Participant.HostAgent,
      action: 'move',
      timeoutMs: 2_000,
      retry: SPEC_RETRY,
      compensation: {
        command: 'move-back',
        participant: Participant.NetworkOverlay,
        retry: SPEC_COMPENSATION_RETRY,
      },
    },
    {
      name: 'decide',
      class: StepClass.Pivot,
      participant: Participant.Coordinator,
      action: 'decide',
      timeoutMs: 1_000,
      retry: SPEC_RETRY,
    },
    {
      name: 'cleanup',
      class: StepClass.Retriable,
      participant: Participant.ContainerCheckpoint,
      action: 'cleanup',
      timeoutMs: 1_000,
      retry: { ...SPEC_RETRY, maxAttempts: Number.POSITIVE_INFINITY },
    },
  ],
});
