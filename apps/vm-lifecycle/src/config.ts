import { envInt, serviceConfigSchema } from '@ccm/config';
import { type z } from 'zod';

/** Three missed heartbeats at the host-agent's default interval (5 s). */
export const DEFAULT_HOST_LIVENESS_TIMEOUT_MS = 15_000;
/** Longest one host-agent or key-broker call of `provision-vm` may take. */
export const DEFAULT_PROVISION_CALL_TIMEOUT_MS = 30_000;

/**
 * vm-lifecycle settings: CCM_HOST_LIVENESS_TIMEOUT_MS, how long after its last heartbeat a host still
 * counts as live (placement takes live hosts only); CCM_PROVISION_CALL_TIMEOUT_MS, the timeout of each
 * call `provision-vm` makes (key-broker launch session and secret, host-agent launch, inject, resume).
 */
export const configSchema = serviceConfigSchema.extend({
  CCM_HOST_LIVENESS_TIMEOUT_MS: envInt(100, 24 * 3_600_000).default(DEFAULT_HOST_LIVENESS_TIMEOUT_MS),
  CCM_PROVISION_CALL_TIMEOUT_MS: envInt(100, 600_000).default(DEFAULT_PROVISION_CALL_TIMEOUT_MS),
});
export type VmLifecycleConfig = z.infer<typeof configSchema>;
