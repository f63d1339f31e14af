import { envInt, serviceConfigSchema } from '@ccm/config';
import { z } from 'zod';

/** Longest an admission statement's evidence may have been verified before it is used. */
export const DEFAULT_ADMISSION_MAX_AGE_MS = 5 * 60_000;
/** How long cut-over waits for the target's first answer to measure the brownout (0: no observer, no figure). */
export const DEFAULT_ANSWER_WAIT_MS = 2_000;
/**
 * How long `probe-workload` probes from a peer before it reports the workload unreachable: the
 * restored workload's first answers over a path just moved (and under TCG, a guest that is slow to
 * answer at all) come within it. The holder's own check after a failed peer gets half of it, so a
 * workload that does not answer fails the step within 1.5 times this plus two connect timeouts,
 * inside the coordinator's 10 s for `verify`.
 */
export const DEFAULT_PROBE_TIMEOUT_MS = 4_000;
/** How long one probe connection of `probe-workload` waits for the workload's answer. */
export const DEFAULT_PROBE_CONNECT_TIMEOUT_MS = 1_000;
/** A new probe connection every this many ms (at most connect timeout / gap in flight). */
export const PROBE_GAP_MS = 100;

/** How long one command to a guest-agent (`guest` driver) may take. */
export const DEFAULT_GUEST_TIMEOUT_MS = 10_000;

/**
 * network-overlay settings. CCM_OVERLAY_DRIVER: `sim` is the in-memory peer table per node; `guest`
 * sends every node change to the guest-agent of that VM (`ccm.cmd.guest.<vmId>.overlay-*`), which
 * changes its own WireGuard interface. The lab driver (libs/wireguard on namespaces, no guest-agents)
 * is built in-process by the tests and the benchmark (see docs/network-overlay.md).
 */
export const configSchema = serviceConfigSchema.extend({
  CCM_OVERLAY_DRIVER: z.enum(['sim', 'guest']).default('sim'),
  CCM_OVERLAY_GUEST_TIMEOUT_MS: envInt(100, 600_000).default(DEFAULT_GUEST_TIMEOUT_MS),
  CCM_OVERLAY_ADMISSION_MAX_AGE_MS: envInt(1_000, 24 * 3_600_000).default(DEFAULT_ADMISSION_MAX_AGE_MS),
  CCM_OVERLAY_ANSWER_WAIT_MS: envInt(0, 600_000).default(DEFAULT_ANSWER_WAIT_MS),
  CCM_OVERLAY_PROBE_TIMEOUT_MS: envInt(10, 600_000).default(DEFAULT_PROBE_TIMEOUT_MS),
  CCM_OVERLAY_PROBE_CONNECT_TIMEOUT_MS: envInt(10, 10_000).default(DEFAULT_PROBE_CONNECT_TIMEOUT_MS),
  /**
   * What `probe-workload` counts as the holder's answer: `name`, an HTTP reply whose body is the
   * holder's VM id (the test servers: a wrong node answering is seen); `connect`, also a connection
   * the workload accepted and answered with bytes that are no HTTP (a real container's own service,
   * which knows no VM id). Over WireGuard only the peer whose allowed IPs hold the /32 can answer a
   * connection to it from another peer, and that peer is the holder the overlay configured.
   */
  CCM_OVERLAY_PROBE: z.enum(['name', 'connect']).default('name'),
});
export type OverlayConfig = z.infer<typeof configSchema>;
