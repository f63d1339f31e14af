import { z } from 'zod';
import { IdSchema } from './migration.js';
import { Ipv4CidrSchema, Ipv4Schema, UnderlayEndpointSchema, WgPublicKeySchema } from './overlay.js';

/**
 * The guest side of the overlay: commands the network-overlay sends a guest-agent on
 * `ccm.cmd.guest.<vmId>.overlay-*` (GUEST_VERBS). The guest's WireGuard key is its attested X25519
 * identity key and never leaves the guest: the overlay names the public key it admitted and the guest
 * refuses to come up under another one. One overlay interface per guest.
 */
export const GuestOverlayUpSchema = z.object({
  /** The public key the overlay admitted (the key-broker's statement); must be this guest's own. */
  publicKey: WgPublicKeySchema,
  /** The guest's node address on the overlay (a /32 on its interface). */
  nodeIp: Ipv4Schema,
  /** The overlay's network, routed through the interface. */
  overlayCidr: Ipv4CidrSchema,
});
export const GuestOverlayUpReplySchema = z.object({
  publicKey: WgPublicKeySchema,
  interface: z.string(),
  /** The guest's underlay WireGuard endpoint, when it knows one. */
  endpoint: UnderlayEndpointSchema.optional(),
});

/** One peer entry as `wg set` takes it (libs/wireguard PeerSpec). */
export const GuestOverlayPeerSchema = z.object({
  publicKey: WgPublicKeySchema,
  remove: z.boolean().optional(),
  endpoint: UnderlayEndpointSchema.optional(),
  /** Replaces the peer's allowed IPs; omitted: left as they are. A /32 given here leaves any other peer. */
  allowedIps: z.array(Ipv4CidrSchema).max(4096).optional(),
  persistentKeepaliveS: z.number().int().min(0).max(65535).optional(),
});
export const GuestOverlayPeersSchema = z.object({
  peers: z.array(GuestOverlayPeerSchema).min(1).max(1000),
});
/** How many peer entries the one `wg set` applied (`overlay-state` lists the peers). */
export const GuestOverlayPeersReplySchema = z.object({ applied: z.number().int().min(0) });

export const GuestOverlayAddressSchema = z.object({
  ip: Ipv4Schema,
  /** true: the guest holds the /32 (cut-over target); false: it drops it (source, rollback). */
  present: z.boolean(),
});
export const GuestOverlayAddressReplySchema = z.object({ ip: Ipv4Schema, present: z.boolean() });

export const GuestOverlayDownReplySchema = z.object({ down: z.boolean() });

export const GuestOverlayStateReplySchema = z.object({
  up: z.boolean(),
  publicKey: WgPublicKeySchema,
  nodeIp: Ipv4Schema.optional(),
  addresses: z.array(Ipv4Schema),
  peers: z.array(
    z.object({
      publicKey: WgPublicKeySchema,
      endpoint: z.string().optional(),
      allowedIps: z.array(z.string()),
    }),
  ),
});

export const GuestOverlayWatchSchema = z.object({
  watchId: IdSchema,
  ip: Ipv4Schema,
  port: z.number().int().min(1).max(65535),
  /**
   * The probes' pace: a new connection every `gapMs`, each given up after `timeoutMs`. Absent: 5 ms
   * and 100 ms, a brownout's resolution (libs/wireguard BROWNOUT_PACE); `probe-workload` asks for a
   * slower pace that waits longer for each answer (a guest under TCG answers in more than 100 ms).
   */
  timeoutMs: z.number().int().min(10).max(10_000).optional(),
  gapMs: z.number().int().min(1).max(1_000).optional(),
});
export const GuestOverlaySamplesSchema = z.object({
  watchId: IdSchema,
  /** Index of the first sample wanted (what the caller has not read yet). */
  from: z.number().int().min(0).default(0),
  stop: z.boolean().default(false),
});
export const GuestOverlaySamplesReplySchema = z.object({
  /** ms since the watch started (the guest's clock) and who answered (the workload's name), if anyone. */
  samples: z.array(z.object({ t: z.number().min(0), by: z.string().max(100).optional() })),
  stopped: z.boolean(),
});
export type GuestOverlaySample = z.infer<typeof GuestOverlaySamplesReplySchema>['samples'][number];
