import { z } from 'zod';
import { EnvelopeSchema } from './envelope.js';
import { IdSchema } from './migration.js';

/**
 * The network-overlay's own commands (`ccm.cmd.network-overlay.<verb>`), besides the saga step verbs
 * of STEP_COMMANDS. Overlays are IPv4 CIDRs; every admitted peer (one per confidential VM) gets a node
 * address and every workload a /32 that follows it across migrations.
 */
export const OVERLAY_VERBS = {
  createOverlay: 'create-overlay',
  admitPeer: 'admit-peer',
  revokePeer: 'revoke-peer',
  assignWorkload: 'assign-workload',
  describeOverlay: 'describe-overlay',
} as const;

/** A WireGuard public key: base64 of 32 bytes. */
export const WgPublicKeySchema = z
  .string()
  .regex(/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/, 'must be a WireGuard key (base64 of 32 bytes)');
/** `a.b.c.d/n`, checked further by the service (host bits, overlaps). */
export const Ipv4CidrSchema = z
  .string()
  .regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'must be an IPv4 CIDR a.b.c.d/n');
export const Ipv4Schema = z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/, 'must be an IPv4 address');
export const UnderlayEndpointSchema = z
  .string()
  .regex(/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/, 'must be a.b.c.d:port');

/** The envelope type of an admission statement. */
export const OVERLAY_ADMISSION_TYPE = 'ccm.overlay.admission.v1';

/**
 * What the key-broker states when it has verified fresh evidence of a guest that binds the guest's
 * WireGuard public key (SNP: REPORT_DATA covers it; SEV/SEV-ES: the identity MAC covers it). It is
 * the `data` of an envelope of type {@link OVERLAY_ADMISSION_TYPE} signed by the key-broker identity;
 * the overlay admits a peer only on such an envelope whose signature, signer and freshness it checked
 * itself, whoever carried it.
 */
export const OverlayAdmissionSchema = z.object({
  vmId: IdSchema,
  wgPublicKey: WgPublicKeySchema,
  /** Hex digest of the evidence the key-broker verified (the attestation report or MAC input). */
  evidenceDigest: z.string().regex(/^[0-9a-f]{64,128}$/, 'must be a hex SHA-256/384/512 digest'),
  /** When the evidence was verified, and until when the statement may be used. */
  verifiedAt: z.iso.datetime({ offset: true }),
  expiresAt: z.iso.datetime({ offset: true }),
  /** The guest's underlay WireGuard endpoint as it reported it (not attested; routing only). */
  endpoint: UnderlayEndpointSchema.optional(),
});
export type OverlayAdmission = z.infer<typeof OverlayAdmissionSchema>;

/** A signed admission statement as it is carried (a whole envelope; verified by the overlay). */
export const SignedAdmissionSchema = EnvelopeSchema.extend({ type: z.literal(OVERLAY_ADMISSION_TYPE) });

export const CreateOverlayRequestSchema = z.object({ overlayId: IdSchema, cidr: Ipv4CidrSchema });
export const OverlaySchema = z.object({ overlayId: IdSchema, cidr: z.string() });

export const AdmitPeerRequestSchema = z.object({ overlayId: IdSchema, admission: SignedAdmissionSchema });
export const PeerSchema = z.object({
  overlayId: IdSchema,
  vmId: IdSchema,
  publicKey: WgPublicKeySchema,
  endpoint: z.string().optional(),
  nodeIp: Ipv4Schema,
  evidenceDigest: z.string(),
  /** The workload /32s this peer holds now. */
  workloadIps: z.array(Ipv4Schema),
});
export type Peer = z.infer<typeof PeerSchema>;

export const RevokePeerRequestSchema = z.object({ vmId: IdSchema, reason: z.string().min(1).max(500) });
export const RevokePeerReplySchema = z.object({ vmId: IdSchema, removedFrom: z.array(IdSchema) });

export const AssignWorkloadRequestSchema = z.object({
  overlayId: IdSchema,
  workloadId: IdSchema,
  vmId: IdSchema,
  /** The TCP port the workload serves; `probe-workload` connects to it. */
  port: z.number().int().min(1).max(65535),
});
export const WorkloadAddressSchema = z.object({
  overlayId: IdSchema,
  workloadId: IdSchema,
  ip: Ipv4Schema,
  vmId: IdSchema,
  port: z.number().int(),
});

export const DescribeOverlayRequestSchema = z.object({ overlayId: IdSchema });
export const OverlayDetailSchema = OverlaySchema.extend({ peers: z.array(PeerSchema) });

/** A move of a workload's /32 as the overlay measured it (the `cut-over` reply carries these). */
export const MoveFiguresSchema = z.object({
  /** Request to every peer updated (the allowed-IPs change and both guests' addresses). */
  cutOverMs: z.number().min(0),
  /**
   * From the last probe answered by the source to the first answered by the target; null when the
   * target had not answered within the cut-over's wait (e.g. not resumed yet): `probe-workload`
   * reports it then, counted from the cut-over request.
   */
  brownoutMs: z.number().min(0).nullable(),
  /** Whether the source still answered when the move began (false: brownout counts from the request). */
  sourceAnswered: z.boolean(),
  peersUpdated: z.number().int().min(0),
});
export type MoveFigures = z.infer<typeof MoveFiguresSchema>;
