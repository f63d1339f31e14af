import { type RetryPolicy } from './definition.js';

/**
 * Retry policies shared by the saga definitions. Units are in the field names; every policy here is
 * frozen so a definition cannot change another's.
 */

/** Control-plane calls before the blackout (attest, provision, key release, overlay): a few quick tries. */
export const DEFAULT_ACTION_RETRY: RetryPolicy = Object.freeze({
  baseDelayMs: 500,
  factor: 2,
  maxDelayMs: 10_000,
  maxAttempts: 4,
  jitterRatio: 0.2,
});

/**
 * Steps inside the blackout (freeze, restore, cut-over, switch-over): one quick second try, then roll
 * back rather than stretch the time the workload is frozen.
 */
export const BLACKOUT_RETRY: RetryPolicy = Object.freeze({
  baseDelayMs: 200,
  factor: 2,
  maxDelayMs: 1_000,
  maxAttempts: 2,
  jitterRatio: 0,
});

/** Verification probes: the restored workload may need a few seconds before it answers. */
export const VERIFY_RETRY: RetryPolicy = Object.freeze({
  baseDelayMs: 1_000,
  factor: 1.5,
  maxDelayMs: 5_000,
  maxAttempts: 6,
  jitterRatio: 0,
});

/** Long-running transfers (pre-copy, converge) are restarted at most once before rolling back. */
export const TRANSFER_RETRY: RetryPolicy = Object.freeze({
  baseDelayMs: 2_000,
  factor: 2,
  maxDelayMs: 10_000,
  maxAttempts: 2,
  jitterRatio: 0.2,
});

/** Compensations: patient, because giving up means an operator is paged. */
export const DEFAULT_COMPENSATION_RETRY: RetryPolicy = Object.freeze({
  baseDelayMs: 1_000,
  factor: 2,
  maxDelayMs: 60_000,
  maxAttempts: 8,
  jitterRatio: 0.2,
});

/** After the pivot: retried until done, backing off to one try every five minutes. */
export const UNTIL_DONE_RETRY: RetryPolicy = Object.freeze({
  baseDelayMs: 1_000,
  factor: 2,
  maxDelayMs: 300_000,
  maxAttempts: Number.POSITIVE_INFINITY,
  jitterRatio: 0.2,
});
