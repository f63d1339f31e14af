import { envInt, serviceConfigSchema } from '@ccm/config';
import { z } from 'zod';

/** Default cap on migrations running at once across the whole installation. */
export const DEFAULT_MAX_ACTIVE = 16;
/** Default cap on migrations running at once out of one source host. */
export const DEFAULT_MAX_PER_SOURCE_HOST = 2;
/** Default cap on migrations running at once into one target host. */
export const DEFAULT_MAX_PER_TARGET_HOST = 2;
/** How long a replica's claim on a saga lasts without renewal; a dead replica's sagas move after it. */
export const DEFAULT_LEASE_MS = 15_000;
/** Period of the backstop scans (due timers, queued migrations) between database notifications. */
export const DEFAULT_TICK_MS = 500;
/**
 * How often an unanswered step command is sent again with the same idempotency key, until its
 * attempt's deadline: a participant restarted after a crash (or another replica) takes it up, and
 * one still working on it joins the repeat to the run in hand.
 */
export const DEFAULT_STEP_RESEND_MS = 10_000;
/** Lower bound of a step timeout after scaling, so a small time scale cannot make one unusable. */
export const DEFAULT_MIN_STEP_TIMEOUT_MS = 1_000;

/** A positive factor up to 100, from an environment string. */
const ratio = z.coerce.number().gt(0).max(100);

/**
 * The saga-coordinator's configuration: the common service settings plus admission limits, lease
 * timing, the re-send interval of unanswered step commands and the time scale of every step timeout
 * and retry delay (tests run the real sagas with
 * `CCM_SAGA_TIME_SCALE=0.01`). Validated in one step at start.
 */
export const coordinatorConfigSchema = serviceConfigSchema.extend({
  CCM_SAGA_MAX_ACTIVE: envInt(1, 100_000).default(DEFAULT_MAX_ACTIVE),
  CCM_SAGA_MAX_PER_SOURCE_HOST: envInt(1, 10_000).default(DEFAULT_MAX_PER_SOURCE_HOST),
  CCM_SAGA_MAX_PER_TARGET_HOST: envInt(1, 10_000).default(DEFAULT_MAX_PER_TARGET_HOST),
  CCM_SAGA_LEASE_MS: envInt(200, 600_000).default(DEFAULT_LEASE_MS),
  CCM_SAGA_TICK_MS: envInt(10, 60_000).default(DEFAULT_TICK_MS),
  CCM_SAGA_TIME_SCALE: ratio.default(1),
  CCM_SAGA_MIN_STEP_TIMEOUT_MS: envInt(10, 600_000).default(DEFAULT_MIN_STEP_TIMEOUT_MS),
  CCM_STEP_RESEND_MS: envInt(50, 3_600_000).default(DEFAULT_STEP_RESEND_MS),
});

export type CoordinatorConfig = z.infer<typeof coordinatorConfigSchema>;
