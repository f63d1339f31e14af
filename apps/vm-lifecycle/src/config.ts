import { envInt, serviceConfigSchema } from '@ccm/config';
import { VmSpecSchema } from '@ccm/contracts';
import { z } from 'zod';

/** Three missed heartbeats at the host-agent's default interval (5 s). */
export const DEFAULT_HOST_LIVENESS_TIMEOUT_MS = 15_000;
/** Longest one host-agent or key-broker call of `provision-vm` may take. */
export const DEFAULT_PROVISION_CALL_TIMEOUT_MS = 30_000;

/** A call of `provision-vm` unanswered this long is sent again (a host-agent restarted mid-launch lost it). */
export const DEFAULT_PROVISION_CALL_RESEND_MS = 5_000;

/** A guest image boots and starts its guest-agent within a minute. */
export const DEFAULT_GUEST_UP_TIMEOUT_MS = 60_000;

/**
 * vm-lifecycle settings: CCM_HOST_LIVENESS_TIMEOUT_MS, how long after its last heartbeat a host still
 * counts as live (placement takes live hosts only); CCM_PROVISION_CALL_TIMEOUT_MS, the timeout of each
 * call `provision-vm` makes (key-broker launch session and secret, host-agent launch, inject, resume);
 * CCM_PROVISION_CALL_RESEND_MS, how long such a call stays unanswered before it is sent again with the
 * same idempotency key (the callee answers a repeat alike).
 */
export const configSchema = serviceConfigSchema.extend({
  CCM_HOST_LIVENESS_TIMEOUT_MS: envInt(100, 24 * 3_600_000).default(DEFAULT_HOST_LIVENESS_TIMEOUT_MS),
  CCM_PROVISION_CALL_TIMEOUT_MS: envInt(100, 600_000).default(DEFAULT_PROVISION_CALL_TIMEOUT_MS),
  CCM_PROVISION_CALL_RESEND_MS: envInt(50, 600_000).default(DEFAULT_PROVISION_CALL_RESEND_MS),
  /**
   * The confidential VM a container's target gets when neither the saga (`context.vmSpec`) nor the
   * registry (the source VM's spec) knows one: CCM's container guest image as JSON, e.g.
   * `{"memoryMiB":512,"cpus":1,"kernel":"/var/lib/ccm/guest/vmlinuz","initrd":"…","cmdline":"…"}`
   * (the owner's policy must accept its launch digest). Unset: such a `provision-vm` is refused.
   */
  CCM_CONTAINER_VM_SPEC: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return undefined;
      try {
        const spec = VmSpecSchema.safeParse(JSON.parse(v));
        if (spec.success) return spec.data;
        ctx.addIssue({ code: 'custom', message: `not a VM spec: ${spec.error.issues[0]?.message ?? ''}` });
      } catch {
        ctx.addIssue({ code: 'custom', message: 'not JSON' });
      }
      return z.NEVER;
    }),
  /** How long `provision-vm` waits for the new guest's guest-agent to answer after the VM runs. */
  CCM_GUEST_UP_TIMEOUT_MS: envInt(100, 600_000).default(DEFAULT_GUEST_UP_TIMEOUT_MS),
});
export type VmLifecycleConfig = z.infer<typeof configSchema>;
