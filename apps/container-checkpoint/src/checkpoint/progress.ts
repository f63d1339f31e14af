import { type CheckpointRound, type DataPlaneProgress } from '@ccm/contracts';

export const PAGE_BYTES = 4096;

/**
 * The progress a round reports once it is recorded. The total is what the rounds have moved plus what
 * the driver counts dirty now (the next round's pages), i.e. what the checkpoint will have moved if the
 * next round is the last: an estimate while the source runs, exact after the final dump (nothing is
 * dirty then). The container's heap size is no such figure: CRIU dumps all of the process's anonymous
 * memory, and later rounds re-send what was written since.
 */
export function roundProgress(
  before: readonly CheckpointRound[],
  r: CheckpointRound,
): Omit<DataPlaneProgress, 'migrationId' | 'step' | 'at'> {
  const sent = before.reduce((a, x) => a + x.imageBytes, 0) + r.imageBytes;
  const final = r.kind === 'dump';
  const remaining = final ? 0 : r.dirtyPages * PAGE_BYTES;
  return {
    stage: final ? `final dump (round ${r.round}, source frozen)` : `pre-dump round ${r.round}`,
    round: r.round,
    bytesTransferred: sent,
    bytesTotal: sent + remaining,
    ...(final ? {} : { bytesTotalEstimated: true }),
    remainingBytes: remaining,
    ...(r.durationMs > 0 ? { dirtyBytesPerSecond: (r.dirtyPages * PAGE_BYTES * 1000) / r.durationMs } : {}),
  };
}
