import { describe, expect, it } from 'vitest';
import { defineSaga } from './define-saga.js';
import { Participant, type SagaSpec, type StepSpec, StepClass } from './definition.js';
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
  type SagaDefinitionError,
  SagaError,
  UnexpectedCompensationError,
  isSagaDefinitionError,
} from './errors.js';

const step = (name: string, cls: StepClass, extra: Partial<StepSpec> = {}): StepSpec => ({
  name,
  class: cls,
  participant: Participant.KeyBroker,
  action: `do-${name}`,
  timeoutMs: 1_000,
  ...extra,
});

const valid: SagaSpec = {
  name: 'demo',
  version: 1,
  steps: [
    step('a', StepClass.Compensable, { compensation: { command: 'undo-a' } }),
    step('b', StepClass.Pivot),
    step('c', StepClass.Retriable),
  ],
};

const withSteps = (...steps: StepSpec[]): SagaSpec => ({ ...valid, steps });
const badRetry = (field: string, value: number): SagaSpec =>
  withSteps(step('a', StepClass.Pivot, { retry: { ...DEFAULT_ACTION_RETRY, [field]: value } }));

describe('defineSaga', () => {
  it('resolves defaults: compensation inherits participant and timeout, retries by class', () => {
    const def = defineSaga(valid);
    expect(def.pivotIndex).toBe(1);
    expect(def.steps[0].compensation).toEqual({
      participant: Participant.KeyBroker,
      command: 'undo-a',
      timeoutMs: 1_000,
      retry: DEFAULT_COMPENSATION_RETRY,
    });
    expect(def.steps[1].action.retry).toBe(DEFAULT_ACTION_RETRY);
    expect(def.steps[2].action.retry).toBe(UNTIL_DONE_RETRY);
    expect(def.steps[2].compensation).toBeUndefined();
    expect(def.steps[0].description).toBe('a');
  });

  it('returns a deeply frozen definition', () => {
    const def = defineSaga(valid);
    expect(Object.isFrozen(def)).toBe(true);
    expect(Object.isFrozen(def.steps)).toBe(true);
    expect(Object.isFrozen(def.steps[0].action)).toBe(true);
  });

  it('accepts a pivot-only saga and a pivot-first saga', () => {
    expect(defineSaga(withSteps(step('p', StepClass.Pivot))).pivotIndex).toBe(0);
    expect(defineSaga(withSteps(step('p', StepClass.Pivot), step('r', StepClass.Retriable))).pivotIndex).toBe(
      0,
    );
  });

  const cases: Array<
    [string, SagaSpec, new (...args: never[]) => SagaDefinitionError, Record<string, unknown>]
  > = [
    ['empty name', { ...valid, name: '' }, InvalidSagaHeaderError, { field: 'name' }],
    ['version 0', { ...valid, version: 0 }, InvalidSagaHeaderError, { field: 'version' }],
    ['fractional version', { ...valid, version: 1.5 }, InvalidSagaHeaderError, { field: 'version' }],
    ['no steps', withSteps(), InvalidSagaHeaderError, { field: 'steps' }],
    [
      'upper-case step name',
      withSteps(step('Admit', StepClass.Pivot)),
      InvalidStepNameError,
      { step: 'Admit' },
    ],
    ['colon in step name', withSteps(step('a:b', StepClass.Pivot)), InvalidStepNameError, { step: 'a:b' }],
    [
      'duplicate names',
      withSteps(step('a', StepClass.Compensable), step('a', StepClass.Pivot)),
      DuplicateStepNameError,
      { step: 'a' },
    ],
    ['no pivot', withSteps(step('a', StepClass.Compensable)), PivotCountError, { pivots: [] }],
    [
      'two pivots',
      withSteps(step('a', StepClass.Pivot), step('b', StepClass.Pivot)),
      PivotCountError,
      { pivots: ['a', 'b'] },
    ],
    [
      'retriable before the pivot',
      withSteps(step('r', StepClass.Retriable), step('p', StepClass.Pivot)),
      RetriableBeforePivotError,
      { step: 'r' },
    ],
    [
      'compensable after the pivot',
      withSteps(step('p', StepClass.Pivot), step('c', StepClass.Compensable)),
      CompensableAfterPivotError,
      { step: 'c' },
    ],
    [
      'pivot with a compensation',
      withSteps(step('p', StepClass.Pivot, { compensation: { command: 'undo' } })),
      UnexpectedCompensationError,
      { step: 'p', stepClass: 'pivot' },
    ],
    [
      'retriable with a compensation',
      withSteps(
        step('p', StepClass.Pivot),
        step('r', StepClass.Retriable, { compensation: { command: 'undo' } }),
      ),
      UnexpectedCompensationError,
      { step: 'r', stepClass: 'retriable' },
    ],
    [
      'verb with a dot',
      withSteps(step('p', StepClass.Pivot, { action: 'do.it' })),
      InvalidStepCommandError,
      { field: 'action command' },
    ],
    [
      'zero timeout',
      withSteps(step('p', StepClass.Pivot, { timeoutMs: 0 })),
      InvalidStepCommandError,
      { field: 'action timeoutMs' },
    ],
    [
      'negative compensation timeout',
      withSteps(
        step('c', StepClass.Compensable, { compensation: { command: 'u', timeoutMs: -1 } }),
        step('p', StepClass.Pivot),
      ),
      InvalidStepCommandError,
      { field: 'compensation timeoutMs' },
    ],
    ['negative base delay', badRetry('baseDelayMs', -1), InvalidRetryPolicyError, { field: 'baseDelayMs' }],
    ['factor below 1', badRetry('factor', 0.5), InvalidRetryPolicyError, { field: 'factor' }],
    ['cap below base', badRetry('maxDelayMs', 100), InvalidRetryPolicyError, { field: 'maxDelayMs' }],
    ['zero attempts', badRetry('maxAttempts', 0), InvalidRetryPolicyError, { field: 'maxAttempts' }],
    ['fractional attempts', badRetry('maxAttempts', 2.5), InvalidRetryPolicyError, { field: 'maxAttempts' }],
    ['jitter above 1', badRetry('jitterRatio', 1.5), InvalidRetryPolicyError, { field: 'jitterRatio' }],
  ];

  it.each(cases)('rejects %s', (_label, spec, errorClass, fields) => {
    let caught: unknown;
    try {
      defineSaga(spec);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(errorClass);
    expect(caught).toBeInstanceOf(SagaError);
    expect(isSagaDefinitionError(caught)).toBe(true);
    expect(caught).toMatchObject({ saga: spec.name, ...fields });
    const err = caught as SagaDefinitionError;
    expect(err.name).toBe(errorClass.name);
    expect(err.code).toMatch(/^SAGA_[A-Z_]+$/);
  });

  it('accepts an unbounded retry policy', () => {
    const def = defineSaga(badRetry('maxAttempts', Number.POSITIVE_INFINITY));
    expect(def.steps[0].action.retry.maxAttempts).toBe(Number.POSITIVE_INFINITY);
  });
});
