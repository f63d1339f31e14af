import { describe, expect, it } from 'vitest';
import { isCcmError } from '@ccm/contracts';
import { SeenEnvelopes } from './replay.js';

const replayed = (f: () => void) => {
  try {
    f();
  } catch (err) {
    return isCcmError(err, 'REPLAYED') && !err.retryable;
  }
  return false;
};

describe('SeenEnvelopes', () => {
  it('refuses an id taken before within the window, and forgets it after', () => {
    const seen = new SeenEnvelopes(1000);
    seen.admit('a', undefined, 0);
    expect(replayed(() => seen.admit('a', undefined, 999))).toBe(true);
    expect(replayed(() => seen.admit('a', undefined, 1001))).toBe(false);
  });

  it('lets a redelivery (the same stream seq) through and refuses the same id at another seq', () => {
    const seen = new SeenEnvelopes(1000);
    seen.admit('e', 7, 0);
    expect(replayed(() => seen.admit('e', 7, 10))).toBe(false);
    expect(replayed(() => seen.admit('e', 8, 20))).toBe(true);
  });

  it('keeps at most max ids, forgetting the oldest', () => {
    const seen = new SeenEnvelopes(10_000, 3);
    for (const id of ['1', '2', '3', '4']) seen.admit(id, undefined, 0);
    expect(replayed(() => seen.admit('1', undefined, 1))).toBe(false);
    expect(replayed(() => seen.admit('4', undefined, 1))).toBe(true);
  });
});
