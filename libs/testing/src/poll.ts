/** Thrown by {@link pollUntil} when the deadline passes; carries the last value or error seen. */
export class PollTimeoutError extends Error {
  override readonly name = 'PollTimeoutError';
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
    readonly last: unknown,
  ) {
    super(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${describe(last)}`);
  }
}

/**
 * Thrown by a probe when waiting longer cannot help (the process it waits for has exited): pollUntil
 * rethrows it at once instead of polling out the deadline.
 */
export class PollAbortError extends Error {
  override readonly name = 'PollAbortError';
}

function describe(v: unknown): string {
  if (v instanceof Error) return `${v.name}: ${v.message}`;
  try {
    return JSON.stringify(v)?.slice(0, 300) ?? String(v);
  } catch {
    return String(v);
  }
}

/** `T` without the falsy values a default poll waits out. */
export type Truthy<T> = Exclude<T, undefined | null | false | 0 | ''>;

export interface PollOptions {
  /** Deadline (default 20 s: generous, so a slow CI machine fails only on a real hang). */
  timeoutMs?: number;
  intervalMs?: number;
}

/**
 * Calls `probe` until it returns a value accepted by `done` (default: truthy) or the deadline passes.
 * The only way CCM tests wait for asynchronous work: never sleep-then-expect.
 */
export function pollUntil<T>(
  what: string,
  probe: () => T | Promise<T>,
  done?: BooleanConstructor,
  opts?: PollOptions,
): Promise<Truthy<T>>;
export function pollUntil<T>(
  what: string,
  probe: () => T | Promise<T>,
  done: (v: T) => boolean,
  opts?: PollOptions,
): Promise<T>;
export async function pollUntil<T>(
  what: string,
  probe: () => T | Promise<T>,
  done: ((v: T) => boolean) | BooleanConstructor = Boolean,
  { timeoutMs = 20_000, intervalMs = 25 }: PollOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      last = v;
      if (done(v)) return v;
    } catch (err) {
      if (err instanceof PollAbortError) throw err;
      last = err;
    }
    if (Date.now() > deadline) throw new PollTimeoutError(what, timeoutMs, last);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
