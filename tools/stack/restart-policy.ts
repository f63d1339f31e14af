/** A service that dies this many times within {@link CRASH_LOOP_WINDOW_MS} is crash-looping. */
export const CRASH_LOOP_DEATHS = 5;
export const CRASH_LOOP_WINDOW_MS = 60_000;
/** The first restart waits this long; each further death within the window doubles it, up to the max. */
export const RESTART_BACKOFF_FIRST_MS = 500;
export const RESTART_BACKOFF_MAX_MS = 8_000;

export type RestartDecision =
  { restart: true; delayMs: number; deathsInWindow: number } | { restart: false; deathsInWindow: number };

/**
 * When to restart a dead service (pure; the caller passes the clock): exponential backoff over the
 * deaths in the last window, and no restart once {@link CRASH_LOOP_DEATHS} fall within it.
 */
export class RestartPolicy {
  private deaths: number[] = [];
  constructor(
    private readonly limits = {
      deaths: CRASH_LOOP_DEATHS,
      windowMs: CRASH_LOOP_WINDOW_MS,
      firstMs: RESTART_BACKOFF_FIRST_MS,
      maxMs: RESTART_BACKOFF_MAX_MS,
    },
  ) {}

  onDeath(nowMs: number): RestartDecision {
    this.deaths = [...this.deaths.filter((t) => nowMs - t < this.limits.windowMs), nowMs];
    const n = this.deaths.length;
    if (n >= this.limits.deaths) return { restart: false, deathsInWindow: n };
    return {
      restart: true,
      delayMs: Math.min(this.limits.firstMs * 2 ** (n - 1), this.limits.maxMs),
      deathsInWindow: n,
    };
  }
}
