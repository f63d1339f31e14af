import { type RetryPolicy } from './definition.js';

/**
 * A source of randomness for jitter: returns a number in [0, 1). It receives the id of the retry timer
 * being scheduled so a deterministic source can derive its value from it; `() => Math.random()` works
 * too. Injected so tests (and replays) control every delay.
 */
export type RandomSource = (timerId: string) => number;

/**
 * The default random source: FNV-1a of the timer id, scaled to [0, 1). Different sagas and attempts
 * get decorrelated delays while `advance` stays a pure function of its inputs.
 */
export const hashedRandom: RandomSource = (timerId) => {
  let h = 0x811c9dc5;
  for (let i = 0; i < timerId.length; i++) {
    h ^= timerId.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h / 0x1_0000_0000;
};

/**
 * The wait after failed attempt `failedAttempt` (1-based) before the next one, in whole milliseconds:
 * `min(maxDelayMs, baseDelayMs * factor^(failedAttempt-1))`, shortened by `jitterRatio * random` of
 * itself. Never negative, never above the cap.
 */
export function backoffDelayMs(policy: RetryPolicy, failedAttempt: number, random: number): number {
  const raw = policy.baseDelayMs === 0 ? 0 : policy.baseDelayMs * policy.factor ** (failedAttempt - 1);
  const capped = Math.min(policy.maxDelayMs, raw);
  const r = Math.min(Math.max(random, 0), 1);
  return Math.round(capped * (1 - (policy.jitterRatio ?? 0) * r));
}

/** True when a retryable failure of attempt `attemptsMade` may be followed by another attempt. */
export function hasAttemptsLeft(policy: RetryPolicy, attemptsMade: number): boolean {
  return attemptsMade < policy.maxAttempts;
}
