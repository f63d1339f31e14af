import { type CheckpointRound } from '@ccm/contracts';
import { describe, expect, it } from 'vitest';
import { PAGE_BYTES, roundProgress } from './progress.js';

const round = (n: number, kind: CheckpointRound['kind'], imageBytes: number, dirtyPages: number) => ({
  round: n,
  kind,
  pages: Math.floor(imageBytes / PAGE_BYTES),
  imageBytes,
  chunks: 1,
  durationMs: 1000,
  dirtyPages,
});

describe('roundProgress', () => {
  const r1 = round(1, 'pre-dump', 17 << 20, 1280);
  const r2 = round(2, 'pre-dump', 5 << 20, 512);

  it('a pre-dump round: the total is what moved plus the dirty pages, marked as an estimate', () => {
    expect(roundProgress([], r1)).toEqual({
      stage: 'pre-dump round 1',
      round: 1,
      bytesTransferred: 17 << 20,
      bytesTotal: (17 << 20) + 1280 * PAGE_BYTES,
      bytesTotalEstimated: true,
      remainingBytes: 1280 * PAGE_BYTES,
      dirtyBytesPerSecond: 1280 * PAGE_BYTES,
    });
    const p = roundProgress([r1], r2);
    expect(p.bytesTransferred).toBe(22 << 20);
    expect(p.bytesTotal).toBe((22 << 20) + 512 * PAGE_BYTES);
  });

  it('the final dump: the total is exactly what every round moved, the bar ends full', () => {
    const p = roundProgress([r1, r2], round(3, 'dump', 3 << 20, 7));
    expect(p).toMatchObject({
      stage: 'final dump (round 3, source frozen)',
      bytesTransferred: 25 << 20,
      bytesTotal: 25 << 20,
      remainingBytes: 0,
    });
    expect(p.bytesTotalEstimated).toBeUndefined();
  });

  it('rounds that moved more than the heap still end at 100%, not past it', () => {
    // 32 MiB heap, but CRIU dumps the whole process's anonymous memory and re-sends written pages.
    const big = [round(1, 'pre-dump', 40 << 20, 2048), round(2, 'pre-dump', 9 << 20, 1024)];
    const p = roundProgress(big, round(3, 'dump', 4 << 20, 0));
    expect(p.bytesTransferred).toBe(53 << 20);
    expect(p.bytesTotal).toBe(p.bytesTransferred);
  });

  it('a round that took no time reports no dirty rate', () => {
    expect(roundProgress([], { ...r1, durationMs: 0 })).not.toHaveProperty('dirtyBytesPerSecond');
  });
});
