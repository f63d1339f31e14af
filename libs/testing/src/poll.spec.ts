import { describe, expect, it } from 'vitest';
import { PollAbortError, pollUntil, PollTimeoutError } from './poll.js';

describe('pollUntil', () => {
  it('returns the first accepted value', async () => {
    let n = 0;
    await expect(
      pollUntil(
        'n reaches 3',
        () => ++n,
        (v) => v >= 3,
        { intervalMs: 1 },
      ),
    ).resolves.toBe(3);
  });

  it('throws PollTimeoutError carrying the last value after the deadline', async () => {
    const err = await pollUntil(
      'never',
      () => 'nope',
      () => false,
      { timeoutMs: 30, intervalMs: 5 },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PollTimeoutError);
    expect((err as PollTimeoutError).last).toBe('nope');
  });

  it('stops at once when the probe throws PollAbortError, long before the deadline', async () => {
    let calls = 0;
    const err = await pollUntil(
      'a process that has exited',
      () => {
        calls++;
        throw new PollAbortError('exited with status 1');
      },
      Boolean,
      { timeoutMs: 60_000, intervalMs: 1 },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PollAbortError);
    expect(calls).toBe(1);
  });
});
