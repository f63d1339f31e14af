import { InvalidIdempotencyKeyError, InvalidMigrationIdError } from './errors.js';
import { CommandKind } from './phases.js';

const COMPENSATE = 'compensate';

/** What an idempotency key identifies. */
export interface IdempotencyKeyParts {
  readonly migrationId: string;
  readonly step: string;
  readonly kind: CommandKind;
  readonly attempt: number;
}

/** @throws InvalidMigrationIdError when the id is empty or contains `:`. */
export function assertMigrationId(migrationId: string): void {
  if (!migrationId || migrationId.includes(':')) throw new InvalidMigrationIdError(migrationId);
}

/**
 * The idempotency key of one attempt of a step command: `${migrationId}:${step}:${attempt}` for the
 * action and `${migrationId}:${step}:compensate:${attempt}` for the compensation (a participant's inbox
 * must never answer a compensation with the action's stored reply). A command re-sent for the same
 * attempt (after a coordinator crash) carries the same key and acts once; a new attempt gets a new key,
 * so participants must also be idempotent on (migration, step) for a retry after an ambiguous timeout.
 */
export function idempotencyKey(
  migrationId: string,
  step: string,
  attempt: number,
  kind: CommandKind = CommandKind.Action,
): string {
  assertMigrationId(migrationId);
  return kind === CommandKind.Action
    ? `${migrationId}:${step}:${attempt}`
    : `${migrationId}:${step}:${COMPENSATE}:${attempt}`;
}

/** Reverses `idempotencyKey`. @throws InvalidIdempotencyKeyError for anything else. */
export function parseIdempotencyKey(key: string): IdempotencyKeyParts {
  const parts = key.split(':');
  const attempt = Number(parts[parts.length - 1]);
  const valid =
    (parts.length === 3 || (parts.length === 4 && parts[2] === COMPENSATE)) &&
    parts[0] !== '' &&
    parts[1] !== '' &&
    Number.isInteger(attempt) &&
    attempt >= 1;
  if (!valid) throw new InvalidIdempotencyKeyError(key);
  return {
    migrationId: parts[0],
    step: parts[1],
    kind: parts.length === 3 ? CommandKind.Action : CommandKind.Compensation,
    attempt,
  };
}

/** Id of the timer that fires when an attempt's reply is overdue. Deterministic, so upserts dedupe. */
export function timeoutTimerId(attemptKey: string): string {
  return `${attemptKey}:timeout`;
}

/** Id of the timer that sends the attempt whose key is given, once its backoff has elapsed. */
export function retryTimerId(nextAttemptKey: string): string {
  return `${nextAttemptKey}:retry`;
}
