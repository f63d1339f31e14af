import { describe, expect, it } from 'vitest';
import { initialConvergence, observeConvergence, onStall, type ConvergenceSample } from './convergence.js';

const STALL_MS = 1_000;

/** Feeds samples (atMs, status, transferred, remaining, passes) and returns the last verdict's kind. */
function run(samples: Array<[number, string, number, number, number]>): { kind: string; detail?: string } {
  let state = initialConvergence(0);
  let last: { kind: string; detail?: string } = { kind: 'progressing' };
  for (const [atMs, status, transferredBytes, remainingBytes, passes] of samples) {
    const s: ConvergenceSample = { atMs, status, transferredBytes, remainingBytes, passes };
    const v = observeConvergence(state, s, STALL_MS);
    state = v.state;
    last = v.kind === 'stalled' ? { kind: v.kind, detail: v.detail } : { kind: v.kind };
  }
  return last;
}

describe('stall detection', () => {
  it.each([
    {
      what: 'a bulk copy that keeps sending is progress, however long it takes',
      samples: [0, 600, 1200, 1800, 2400].map((t, i): [number, string, number, number, number] => [
        t,
        'active',
        (i + 1) << 20,
        100 << 20,
        1,
      ]),
      expected: 'progressing',
    },
    {
      what: 'a bulk copy that sends nothing for the stall time has stalled',
      samples: [
        [0, 'setup', 0, 0, 0],
        [500, 'active', 0, 100 << 20, 1],
        [1100, 'active', 0, 100 << 20, 1],
      ] as Array<[number, string, number, number, number]>,
      expected: 'stalled',
    },
    {
      what: 'passes that start with ever less dirty memory converge',
      samples: [
        [0, 'active', 1 << 20, 90 << 20, 1],
        [800, 'active', 80 << 20, 20 << 20, 2],
        [1600, 'active', 100 << 20, 8 << 20, 3],
        [2400, 'active', 108 << 20, 3 << 20, 4],
        [3000, 'device', 111 << 20, 0, 5],
      ] as Array<[number, string, number, number, number]>,
      expected: 'progressing',
    },
    {
      what: 'bytes flowing while every pass starts with the same dirty set is a stall (dirty rate above bandwidth)',
      samples: [
        [0, 'active', 1 << 20, 90 << 20, 1],
        [500, 'active', 80 << 20, 16 << 20, 2],
        [900, 'active', 90 << 20, 16 << 20, 3],
        [1300, 'active', 100 << 20, 16 << 20, 4],
        [1700, 'active', 110 << 20, 16 << 20, 5],
      ] as Array<[number, string, number, number, number]>,
      expected: 'stalled',
    },
    {
      what: 'reaching pre-switchover is progress',
      samples: [
        [0, 'active', 1 << 20, 90 << 20, 1],
        [500, 'active', 80 << 20, 16 << 20, 2],
        [1400, 'pre-switchover', 90 << 20, 0, 3],
      ] as Array<[number, string, number, number, number]>,
      expected: 'progressing',
    },
  ])('$what', ({ samples, expected }) => {
    expect(run(samples).kind).toBe(expected);
  });

  it('says what it saw when it declares a stall', () => {
    const v = run([
      [0, 'active', 1 << 20, 90 << 20, 1],
      [500, 'active', 80 << 20, 16 << 20, 2],
      [1600, 'active', 110 << 20, 16 << 20, 3],
    ]);
    expect(v.kind).toBe('stalled');
    expect(v.detail).toMatch(/no progress for 1100 ms \(limit 1000 ms\): pass 3, 16777216 bytes dirty/);
  });
});

describe('what a stall leads to', () => {
  const STALL = 1_000;
  it('fails a migration that does not allow post-copy', () => {
    expect(onStall('no progress', { allowed: false }, 5_000, STALL)).toEqual({
      kind: 'fail',
      reason: 'no progress',
    });
  });

  it('switches one that allows it to post-copy, once', () => {
    expect(onStall('no progress', { allowed: true }, 5_000, STALL)).toEqual({
      kind: 'start-postcopy',
      reason: 'pre-copy does not converge: no progress',
    });
    expect(onStall('no progress', { allowed: true, requestedAtMs: 5_000 }, 5_500, STALL)).toBeUndefined();
  });

  it('fails it, still before the point of no return, when QEMU stays in pre-copy a stall time after the request', () => {
    const a = onStall('no progress', { allowed: true, requestedAtMs: 5_000 }, 6_000, STALL);
    expect(a).toEqual({
      kind: 'fail',
      reason: expect.stringContaining('post-copy was requested 1000 ms ago'),
    });
  });
});
