import { envInt, serviceConfigSchema } from '@ccm/config';
import { type z } from 'zod';

/** Pre-copy stops once a round leaves at most this many dirty pages (4 KiB each) behind. */
export const DEFAULT_DIRTY_THRESHOLD_PAGES = 256;
/** Pre-copy stops after this many rounds even when the dirty set stays above the threshold. */
export const DEFAULT_MAX_ROUNDS = 8;
/** The longest wait for one guest-agent command (a round streams the whole image before it answers). */
export const DEFAULT_GUEST_TIMEOUT_MS = 120_000;

/**
 * container-checkpoint settings: when iterative pre-copy has converged (dirty pages left by a round
 * at or under CCM_CHECKPOINT_DIRTY_THRESHOLD_PAGES) or must stop anyway (CCM_CHECKPOINT_MAX_ROUNDS),
 * and how long one guest-agent command may take.
 */
export const configSchema = serviceConfigSchema.extend({
  CCM_CHECKPOINT_DIRTY_THRESHOLD_PAGES: envInt(0, 1 << 24).default(DEFAULT_DIRTY_THRESHOLD_PAGES),
  CCM_CHECKPOINT_MAX_ROUNDS: envInt(1, 100).default(DEFAULT_MAX_ROUNDS),
  CCM_CHECKPOINT_GUEST_TIMEOUT_MS: envInt(100, 3_600_000).default(DEFAULT_GUEST_TIMEOUT_MS),
});
export type CheckpointConfig = z.infer<typeof configSchema>;
