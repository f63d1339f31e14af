/**
 * Stall detection for pre-copy migration, as a pure function of the samples `query-migrate` gives.
 *
 * What counts as progress:
 * - during the first pass (the bulk copy), any increase of the bytes transferred: every page sent
 *   then need not be sent again unless the guest dirties it;
 * - from the second pass on, a pass that starts with less dirty memory than every earlier pass did
 *   (by at least {@link MIN_IMPROVEMENT}): the dirty set shrinks towards what fits the downtime budget.
 *   Bytes still flow when the guest dirties memory faster than the link carries it, but then every
 *   pass starts with the same (or more) dirty memory, so that is not progress;
 * - reaching switch-over or the end.
 *
 * No progress for `stallTimeoutMs` is a stall. The clock is the caller's (tests drive it).
 */

/** A later pass must start with at least this much less dirty memory to count as progress. */
export const MIN_IMPROVEMENT = 0.05;

export interface ConvergenceSample {
  /** Monotonic milliseconds. */
  atMs: number;
  status: string;
  transferredBytes: number;
  remainingBytes: number;
  /** `dirty-sync-count`: 1 during the first pass. */
  passes: number;
}

export interface ConvergenceState {
  lastProgressAtMs: number;
  lastTransferred: number;
  /** Pass number of the latest sample. */
  pass: number;
  /** Smallest dirty memory any pass (≥ 2) started with. */
  bestPassStart: number;
  /** Why the latest progress counted, for logs. */
  lastProgress: string;
}

export type ConvergenceVerdict =
  | { kind: 'progressing'; state: ConvergenceState }
  | { kind: 'stalled'; state: ConvergenceState; sinceMs: number; detail: string };

const AT_END = new Set(['pre-switchover', 'device', 'completed']);

export function initialConvergence(atMs: number): ConvergenceState {
  return {
    lastProgressAtMs: atMs,
    lastTransferred: 0,
    pass: 0,
    bestPassStart: Infinity,
    lastProgress: 'start',
  };
}

/** Folds one sample into the state and says whether the migration has stalled. */
export function observeConvergence(
  state: ConvergenceState,
  s: ConvergenceSample,
  stallTimeoutMs: number,
): ConvergenceVerdict {
  let next: ConvergenceState = { ...state, pass: Math.max(state.pass, s.passes) };
  const progress = (why: string): void => {
    next = { ...next, lastProgressAtMs: s.atMs, lastProgress: why };
  };
  if (AT_END.has(s.status)) progress(s.status);
  else if (s.passes <= 1) {
    if (s.transferredBytes > state.lastTransferred) progress('bulk copy');
  } else if (s.passes > state.pass) {
    // First sample of a new pass: its remaining bytes are (close to) the dirty set the pass starts with.
    if (s.remainingBytes < state.bestPassStart * (1 - MIN_IMPROVEMENT)) {
      progress(`pass ${s.passes} starts with ${s.remainingBytes} dirty bytes`);
      next = { ...next, bestPassStart: s.remainingBytes };
    }
  }
  next = { ...next, lastTransferred: Math.max(state.lastTransferred, s.transferredBytes) };
  const sinceMs = Math.round(s.atMs - next.lastProgressAtMs);
  if (sinceMs >= stallTimeoutMs) {
    const best = Number.isFinite(next.bestPassStart) ? `${next.bestPassStart} bytes` : 'none yet';
    return {
      kind: 'stalled',
      state: next,
      sinceMs,
      detail:
        `no progress for ${sinceMs} ms (limit ${stallTimeoutMs} ms): pass ${s.passes}, ` +
        `${s.remainingBytes} bytes dirty, smallest dirty set at a pass start ${best}, ` +
        `${s.transferredBytes} bytes sent`,
    };
  }
  return { kind: 'progressing', state: next };
}

/**
 * What the agent does about a stalled pre-copy. Without post-copy allowed the migration fails
 * (MIGRATION_STALLED: cancelled, the source runs on). With it, the agent switches to post-copy once
 * (`migrate-start-postcopy`); if QEMU has not left pre-copy within another stall time after that
 * request (it refused, or the stream is stuck), the migration fails the same way, still before the
 * point of no return.
 */
export type StallAction = { kind: 'fail'; reason: string } | { kind: 'start-postcopy'; reason: string };

export function onStall(
  detail: string,
  postcopy: { allowed: boolean; requestedAtMs?: number },
  nowMs: number,
  stallTimeoutMs: number,
): StallAction | undefined {
  if (postcopy.requestedAtMs !== undefined) {
    const waited = Math.round(nowMs - postcopy.requestedAtMs);
    return waited >= stallTimeoutMs
      ? { kind: 'fail', reason: `post-copy was requested ${waited} ms ago but pre-copy goes on: ${detail}` }
      : undefined;
  }
  if (!postcopy.allowed) return { kind: 'fail', reason: detail };
  return { kind: 'start-postcopy', reason: `pre-copy does not converge: ${detail}` };
}
