/**
 * Root of every error libs/saga throws. Each failure has its own subclass with a stable `code` and
 * context fields; callers use `instanceof` or the `is*` predicates, never message text.
 *
 * The engine throws only for programming errors (a malformed definition, a state row that belongs to
 * another definition, a malformed id). Facts that arrive late, twice or out of place are not errors: the
 * transition function reports them as ignored.
 */
export abstract class SagaError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export function isSagaError(err: unknown): err is SagaError {
  return err instanceof SagaError;
}

/** Root of the failures `defineSaga` reports; `saga` names the definition being validated. */
export abstract class SagaDefinitionError extends SagaError {
  constructor(
    readonly saga: string,
    message: string,
  ) {
    super(`saga definition "${saga}": ${message}`);
  }
}

export function isSagaDefinitionError(err: unknown): err is SagaDefinitionError {
  return err instanceof SagaDefinitionError;
}

/** The definition has no name, a bad version, or no steps at all. */
export class InvalidSagaHeaderError extends SagaDefinitionError {
  readonly code = 'SAGA_HEADER_INVALID';
  constructor(
    saga: string,
    readonly field: 'name' | 'version' | 'steps',
    detail: string,
  ) {
    super(saga, `${field} ${detail}`);
  }
}

/** A step name is not lowercase words joined by dashes (names end up inside idempotency keys). */
export class InvalidStepNameError extends SagaDefinitionError {
  readonly code = 'SAGA_STEP_NAME_INVALID';
  constructor(
    saga: string,
    readonly step: string,
  ) {
    super(saga, `step name ${JSON.stringify(step)} must match /^[a-z][a-z0-9-]*$/`);
  }
}

/** Two steps share a name, so facts and idempotency keys could not tell them apart. */
export class DuplicateStepNameError extends SagaDefinitionError {
  readonly code = 'SAGA_STEP_NAME_DUPLICATE';
  constructor(
    saga: string,
    readonly step: string,
  ) {
    super(saga, `step name "${step}" is used more than once`);
  }
}

/** The definition does not have exactly one pivot (the point of no return). */
export class PivotCountError extends SagaDefinitionError {
  readonly code = 'SAGA_PIVOT_COUNT';
  constructor(
    saga: string,
    readonly pivots: readonly string[],
  ) {
    super(
      saga,
      pivots.length === 0
        ? 'has no pivot step; exactly one is required'
        : `has ${pivots.length} pivot steps (${pivots.join(', ')}); exactly one is required`,
    );
  }
}

/** A `retriable` step stands before the pivot, where a failure must be able to roll back. */
export class RetriableBeforePivotError extends SagaDefinitionError {
  readonly code = 'SAGA_RETRIABLE_BEFORE_PIVOT';
  constructor(
    saga: string,
    readonly step: string,
  ) {
    super(saga, `retriable step "${step}" comes before the pivot; retriable steps belong after it`);
  }
}

/** A `compensable` step stands after the pivot, where nothing is ever compensated. */
export class CompensableAfterPivotError extends SagaDefinitionError {
  readonly code = 'SAGA_COMPENSABLE_AFTER_PIVOT';
  constructor(
    saga: string,
    readonly step: string,
  ) {
    super(saga, `compensable step "${step}" comes after the pivot; only retriable steps may follow it`);
  }
}

/** A pivot or retriable step declares a compensation that the engine would never run. */
export class UnexpectedCompensationError extends SagaDefinitionError {
  readonly code = 'SAGA_COMPENSATION_NOT_ALLOWED';
  constructor(
    saga: string,
    readonly step: string,
    readonly stepClass: string,
  ) {
    super(saga, `${stepClass} step "${step}" may not declare a compensation`);
  }
}

/** A command name, participant or timeout of a step is missing or out of range. */
export class InvalidStepCommandError extends SagaDefinitionError {
  readonly code = 'SAGA_STEP_COMMAND_INVALID';
  constructor(
    saga: string,
    readonly step: string,
    readonly field: string,
    detail: string,
  ) {
    super(saga, `step "${step}": ${field} ${detail}`);
  }
}

/** A retry policy field is out of range (negative delay, factor below 1, cap below base, ...). */
export class InvalidRetryPolicyError extends SagaDefinitionError {
  readonly code = 'SAGA_RETRY_POLICY_INVALID';
  constructor(
    saga: string,
    readonly step: string,
    readonly field: string,
    readonly value: number,
    detail: string,
  ) {
    super(saga, `step "${step}": retry ${field} = ${value} ${detail}`);
  }
}

/** A saga state row was handed to the machine of another definition (or another version of it). */
export class DefinitionMismatchError extends SagaError {
  readonly code = 'SAGA_DEFINITION_MISMATCH';
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`saga state belongs to ${actual}, not to ${expected}`);
  }
}

/** A migration id is empty or contains `:`, which would make idempotency keys ambiguous. */
export class InvalidMigrationIdError extends SagaError {
  readonly code = 'SAGA_MIGRATION_ID_INVALID';
  constructor(readonly migrationId: string) {
    super(`migration id ${JSON.stringify(migrationId)} must be non-empty and contain no ':'`);
  }
}

/** A string handed to `parseIdempotencyKey` is not a key this engine builds. */
export class InvalidIdempotencyKeyError extends SagaError {
  readonly code = 'SAGA_IDEMPOTENCY_KEY_INVALID';
  constructor(readonly key: string) {
    super(`${JSON.stringify(key)} is not a saga idempotency key`);
  }
}
