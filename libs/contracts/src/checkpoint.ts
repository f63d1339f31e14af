import { z } from 'zod';

/**
 * container-checkpoint's own vocabulary beside the step contracts (STEP_COMMANDS['container-checkpoint']):
 * its error codes and the per-round figures its pre-copy, freeze-dump and restore replies carry.
 */
export const CheckpointErrorCodes = {
  /** The step command's context names no source guest (`sourceVmId`, from vm-lifecycle's provision-vm). */
  NoSourceVm: 'NO_SOURCE_VM',
  /** The workload is not a container: container-checkpoint moves containers only. */
  NotAContainer: 'NOT_A_CONTAINER',
} as const;

/** One image round as container-checkpoint recorded it (pre-dump rounds, then the final dump). */
export const CheckpointRoundSchema = z.object({
  round: z.number().int().min(1),
  kind: z.enum(['pre-dump', 'dump']),
  pages: z.number().int().min(0),
  imageBytes: z.number().int().min(0),
  chunks: z.number().int().min(0),
  durationMs: z.number().min(0),
  /** Pages dirtied again since this round's snapshot (what the next round would send). */
  dirtyPages: z.number().int().min(0),
});
export type CheckpointRound = z.infer<typeof CheckpointRoundSchema>;
