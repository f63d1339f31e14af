import { serviceConfigSchema } from '@ccm/config';
import { z } from 'zod';
import { overlayConfigFields } from './overlay/overlay-config.js';

/**
 * guest-agent settings: the common service settings plus CCM_VM_ID (its command subjects carry it),
 * the checkpoint driver, and where it listens for image streams from other guests.
 */
export const configSchema = serviceConfigSchema.extend({
  CCM_VM_ID: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, "-" and "_" only'),
  /**
   * `sim`: a process model with pages and a dirty rate; `runc`: real containers with runc and CRIU (in
   * the container guest of tools/guest-image; needs root, runc, criu).
   */
  CCM_GUEST_DRIVER: z.enum(['sim', 'runc']).default('sim'),
  /** runc driver: where bundles, runc's state and the image rounds live (tmpfs in the guest). */
  CCM_GUEST_RUNC_DIR: z
    .string()
    .regex(/^\/[A-Za-z0-9/_.-]*$/, 'an absolute path')
    .default('/run/ccm/runc-driver'),
  /**
   * runc driver: `madvise` sets the guest's transparent huge pages from `always` to `madvise` before
   * the first container starts (with THP `always` a heap sits in 2 MiB pages and one write marks all
   * 512 of its 4 KiB pages dirty for CRIU's memory tracking, so every pre-dump round re-sends the
   * heap); `keep` leaves the kernel's setting alone.
   */
  CCM_GUEST_RUNC_THP: z.enum(['madvise', 'keep']).default('madvise'),
  /** runc driver: deadline of one runc/CRIU run. */
  CCM_GUEST_RUNC_TIMEOUT_MS: z.coerce.number().int().min(1000).max(3_600_000).default(300_000),
  /** The address image streams from other guests arrive on (the guest's underlay address). */
  CCM_GUEST_STREAM_HOST: z.string().min(1).default('127.0.0.1'),
  /** Plaintext bytes per sealed chunk of an image stream (libs/sealing allows up to 4 MiB). */
  CCM_GUEST_STREAM_CHUNK_BYTES: z.coerce
    .number()
    .int()
    .min(4096)
    .max(4 * 1024 * 1024)
    .default(1024 * 1024),
  /**
   * How this guest attests: `none` (no secure processor: `evidence` is refused), or `emulated`: a
   * simulated SNP guest launched on the software secure processor whose state is CCM_GUEST_SEV_DIR (the
   * host's platform, made by libs/sev-emulator with a lab), booted from the image labelled
   * CCM_GUEST_IMAGE with SNP guest policy CCM_GUEST_SNP_POLICY; or `sev` / `sev-es`: an SEV or
   * SEV-ES guest launched through the key-broker's attested launch, which proves itself with a MAC
   * under the identity secret its LAUNCH_SECRET injected. The secret is read from
   * CCM_GUEST_SECRET_TABLE: the EFI secret table of the guest's secret area (with the software secure
   * processor, the guest's own decrypted view of the page LAUNCH_SECRET wrote).
   */
  CCM_GUEST_SEV: z.enum(['none', 'emulated', 'sev', 'sev-es']).default('none'),
  CCM_GUEST_SECRET_TABLE: z.string().min(1).optional(),
  CCM_GUEST_SEV_DIR: z.string().min(1).optional(),
  CCM_GUEST_IMAGE: z.string().min(1).max(200).default('ccm-guest'),
  CCM_GUEST_SNP_POLICY: z
    .string()
    .regex(/^0x[0-9a-fA-F]{1,16}$/, 'a 64-bit hex SNP guest policy, e.g. 0x30000')
    .default('0x30000'),
  /** The process of the VM this agent is the inside of: the agent exits when it is gone (sim VMs). */
  CCM_GUEST_VM_PID: z.coerce.number().int().min(1).optional(),
  /** Longest wait for the target's verdict on one round (connect to verdict). */
  CCM_GUEST_STREAM_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(60_000),
  /**
   * A stream on which nothing moves for this long fails UNAVAILABLE before its timeout: a target
   * guest that died answers nothing (no reset), and the source would otherwise wait out the timeout.
   */
  CCM_GUEST_STREAM_STALL_MS: z.coerce.number().int().min(100).max(3_600_000).default(30_000),
  ...overlayConfigFields,
});
export type GuestAgentConfig = z.infer<typeof configSchema>;
