import { describe, expect, it } from 'vitest';
import { type RetryPolicy } from './definition.js';
import { InvalidIdempotencyKeyError, InvalidMigrationIdError } from './errors.js';
import { idempotencyKey, parseIdempotencyKey, retryTimerId, timeoutTimerId } from './keys.js';
import { CommandKind } from './phases.js';
import { backoffDelayMs, hasAttemptsLeft, hashedRandom } from './retry.js';

describe('idempotency keys', () => {
  it('builds `${migrationId}:${step}:${attempt}` for actions', () => {
    expect(idempotencyKey('m-1', 'pre-copy', 3)).toBe('m-1:pre-copy:3');
  });

  it('gives compensations their own key space', () => {
    expect(idempotencyKey('m-1', 'pre-copy', 1, CommandKind.Compensation)).toBe('m-1:pre-copy:compensate:1');
  });

  it.each([CommandKind.Action, CommandKind.Compensation])('round-trips %s keys', (kind) => {
    const key = idempotencyKey('3f1c-9a', 'release-key', 7, kind);
    expect(parseIdempotencyKey(key)).toEqual({
      migrationId: '3f1c-9a',
      step: 'release-key',
      kind,
      attempt: 7,
    });
  });

  it.each(['', 'a:b'])('rejects migration id %j', (id) => {
    expect(() => idempotencyKey(id, 'admit', 1)).toThrow(InvalidMigrationIdError);
  });

  it.each(['m', 'm:admit', 'm:admit:0', 'm:admit:x', 'm:admit:undo:1', ':admit:1', 'm::1', 'a:b:c:d:1'])(
    'refuses to parse %j',
    (key) => {
      expect(() => parseIdempotencyKey(key)).toThrow(InvalidIdempotencyKeyError);
    },
  );

  it('derives timer ids from attempt keys', () => {
    expect(timeoutTimerId('m:admit:1')).toBe('m:admit:1:timeout');
    expect(retryTimerId('m:admit:2')).toBe('m:admit:2:retry');
  });
});

describe('backoff', () => {
  const policy: RetryPolicy = { baseDelayMs: 1_000, factor: 2, maxDelayMs: 5_000, maxAttempts: 5 };

  it.each([
    [1, 1_000],
    [2, 2_000],
    [3, 4_000],
    [4, 5_000],
    [40, 5_000],
  ])('waits base * factor^(n-1), capped: after attempt %i, %i ms', (n, ms) => {
    expect(backoffDelayMs(policy, n, 0.9)).toBe(ms);
  });

  it.each([
    [0, 4_000],
    [0.5, 3_000],
    [0.999, 2_002],
  ])('shortens by jitterRatio * random (random %f → %i ms)', (r, ms) => {
    expect(backoffDelayMs({ ...policy, jitterRatio: 0.5 }, 3, r)).toBe(ms);
  });

  it('full jitter stays within [0, cap]', () => {
    for (let r = 0; r < 1; r += 0.07) {
      const d = backoffDelayMs({ ...policy, jitterRatio: 1 }, 10, r);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(5_000);
    }
  });

  it('a zero base never waits, even with huge exponents', () => {
    expect(backoffDelayMs({ ...policy, baseDelayMs: 0 }, 5_000, 0)).toBe(0);
  });

  it('counts attempts including the first; Infinity never runs out', () => {
    expect(hasAttemptsLeft(policy, 4)).toBe(true);
    expect(hasAttemptsLeft(policy, 5)).toBe(false);
    expect(hasAttemptsLeft({ ...policy, maxAttempts: Number.POSITIVE_INFINITY }, 1e9)).toBe(true);
  });

  it('hashedRandom is deterministic, in [0, 1), and spreads different ids', () => {
    const ids = Array.from({ length: 200 }, (_, i) => `m-${i}:admit:2:retry`);
    const values = ids.map(hashedRandom);
    expect(values.map((v, i) => hashedRandom(ids[i]) === v).every(Boolean)).toBe(true);
    expect(values.every((v) => v >= 0 && v < 1)).toBe(true);
    expect(new Set(values.map((v) => Math.floor(v * 10))).size).toBe(10);
  });
});
