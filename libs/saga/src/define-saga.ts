import {
  type CommandDefinition,
  type RetryPolicy,
  type SagaDefinition,
  type SagaSpec,
  type StepDefinition,
  type StepSpec,
  StepClass,
} from './definition.js';
import { DEFAULT_ACTION_RETRY, DEFAULT_COMPENSATION_RETRY, UNTIL_DONE_RETRY } from './defaults.js';
import {
  CompensableAfterPivotError,
  DuplicateStepNameError,
  InvalidRetryPolicyError,
  InvalidSagaHeaderError,
  InvalidStepCommandError,
  InvalidStepNameError,
  PivotCountError,
  RetriableBeforePivotError,
  UnexpectedCompensationError,
} from './errors.js';

const STEP_NAME = /^[a-z][a-z0-9-]*$/;
const VERB = /^[a-z][a-z0-9_-]*$/;

/** The retry policy a step gets when its spec names none: retriable steps retry until done. */
export function defaultRetryFor(stepClass: StepClass): RetryPolicy {
  return stepClass === StepClass.Retriable ? UNTIL_DONE_RETRY : DEFAULT_ACTION_RETRY;
}

/**
 * Validates a saga spec and returns the deeply frozen definition with every default resolved.
 * Rules: at least one step; unique dash-case step names; exactly one pivot; only compensable steps
 * before it and only retriable steps after it; neither the pivot nor retriable steps declare a
 * compensation; verbs are subject tokens; timeouts positive; retry policies in range.
 *
 * @throws a `SagaDefinitionError` subclass naming the first rule broken.
 */
export function defineSaga(spec: SagaSpec): SagaDefinition {
  const saga = spec.name;
  if (!saga) throw new InvalidSagaHeaderError(String(saga), 'name', 'must not be empty');
  if (!Number.isInteger(spec.version) || spec.version < 1) {
    throw new InvalidSagaHeaderError(saga, 'version', `must be a positive integer, got ${spec.version}`);
  }
  if (spec.steps.length === 0) throw new InvalidSagaHeaderError(saga, 'steps', 'must not be empty');

  const seen = new Set<string>();
  for (const step of spec.steps) {
    if (!STEP_NAME.test(step.name)) throw new InvalidStepNameError(saga, step.name);
    if (seen.has(step.name)) throw new DuplicateStepNameError(saga, step.name);
    seen.add(step.name);
  }

  const pivots = spec.steps.filter((s) => s.class === StepClass.Pivot).map((s) => s.name);
  if (pivots.length !== 1) throw new PivotCountError(saga, pivots);
  const pivotIndex = spec.steps.findIndex((s) => s.class === StepClass.Pivot);

  spec.steps.forEach((step, i) => {
    if (i < pivotIndex && step.class === StepClass.Retriable)
      throw new RetriableBeforePivotError(saga, step.name);
    if (i > pivotIndex && step.class === StepClass.Compensable) {
      throw new CompensableAfterPivotError(saga, step.name);
    }
    if (step.class !== StepClass.Compensable && step.compensation) {
      throw new UnexpectedCompensationError(saga, step.name, step.class);
    }
    if (step.interruptible && (step.compensation || i >= pivotIndex)) {
      throw new InvalidStepCommandError(
        saga,
        step.name,
        'interruptible',
        'only a step before the pivot without a compensation can be abandoned',
      );
    }
  });

  const steps = spec.steps.map((step) => resolveStep(saga, step));
  return deepFreeze({ name: saga, version: spec.version, steps, pivotIndex });
}

function resolveStep(saga: string, spec: StepSpec): StepDefinition {
  const action = command(saga, spec.name, 'action', {
    participant: spec.participant,
    command: spec.action,
    timeoutMs: spec.timeoutMs,
    retry: spec.retry ?? defaultRetryFor(spec.class),
  });
  const comp = spec.compensation;
  return {
    name: spec.name,
    class: spec.class,
    description: spec.description ?? spec.name,
    collaborators: [...(spec.collaborators ?? [])],
    action,
    interruptible: spec.interruptible ?? false,
    ...(comp
      ? {
          compensation: command(saga, spec.name, 'compensation', {
            participant: comp.participant ?? spec.participant,
            command: comp.command,
            timeoutMs: comp.timeoutMs ?? spec.timeoutMs,
            retry: comp.retry ?? DEFAULT_COMPENSATION_RETRY,
          }),
        }
      : {}),
  };
}

function command(saga: string, step: string, which: string, c: CommandDefinition): CommandDefinition {
  if (!c.participant) throw new InvalidStepCommandError(saga, step, `${which} participant`, 'is missing');
  if (!VERB.test(c.command)) {
    throw new InvalidStepCommandError(
      saga,
      step,
      `${which} command`,
      `${JSON.stringify(c.command)} is not a verb`,
    );
  }
  if (!Number.isFinite(c.timeoutMs) || c.timeoutMs <= 0) {
    throw new InvalidStepCommandError(
      saga,
      step,
      `${which} timeoutMs`,
      `must be positive, got ${c.timeoutMs}`,
    );
  }
  checkRetry(saga, step, c.retry);
  return { participant: c.participant, command: c.command, timeoutMs: c.timeoutMs, retry: c.retry };
}

function checkRetry(saga: string, step: string, r: RetryPolicy): void {
  const fail = (field: string, value: number, detail: string): never => {
    throw new InvalidRetryPolicyError(saga, step, field, value, detail);
  };
  if (!Number.isFinite(r.baseDelayMs) || r.baseDelayMs < 0)
    fail('baseDelayMs', r.baseDelayMs, 'must be >= 0');
  if (!Number.isFinite(r.factor) || r.factor < 1) fail('factor', r.factor, 'must be >= 1');
  if (!Number.isFinite(r.maxDelayMs) || r.maxDelayMs < r.baseDelayMs) {
    fail('maxDelayMs', r.maxDelayMs, `must be finite and >= baseDelayMs (${r.baseDelayMs})`);
  }
  const attemptsOk =
    r.maxAttempts === Number.POSITIVE_INFINITY || (Number.isInteger(r.maxAttempts) && r.maxAttempts >= 1);
  if (!attemptsOk) fail('maxAttempts', r.maxAttempts, 'must be an integer >= 1 or Infinity');
  const jitter = r.jitterRatio ?? 0;
  if (!(jitter >= 0 && jitter <= 1)) fail('jitterRatio', jitter, 'must be within [0, 1]');
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
