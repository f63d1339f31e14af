import { z } from 'zod';
import { IdSchema } from './migration.js';
import { Ipv4Schema, MoveFiguresSchema, WgPublicKeySchema } from './overlay.js';
import { subjects } from './subjects.js';

/** The aggregate of the network-overlay's events: `ccm.evt.overlay.<overlayId>.<name>`. */
export const OVERLAY_AGGREGATE = 'overlay' as const;

const Iso = z.iso.datetime({ offset: true });
const OverlayBase = z.object({
  overlayId: IdSchema,
  at: Iso,
  /** The migration the change belongs to, when a saga step made it (also the envelope's correlationid). */
  migrationId: IdSchema.optional(),
});

/** A workload's /32 changed peer: who held it, who holds it now, and the move's measured figures. */
const Moved = OverlayBase.extend(MoveFiguresSchema.shape).extend({
  workloadId: IdSchema,
  ip: Ipv4Schema,
  from: IdSchema,
  to: IdSchema,
});

/**
 * Every overlay event by its subject's last token (past tense), with its data schema. The
 * network-overlay writes them through its outbox in the transaction of the change, signed, with
 * `correlationid` = the migration id when a saga step made the change, so they join that migration's
 * hash chain and `ccm audit replay` shows them (with the brownout) beside the coordinator's events.
 */
export const OVERLAY_EVENTS = {
  /** A guest was admitted (or its key rotated) on a key-broker statement the overlay verified. */
  'peer-admitted': OverlayBase.extend({
    vmId: IdSchema,
    publicKey: WgPublicKeySchema,
    nodeIp: Ipv4Schema,
    evidenceDigest: z.string(),
    /** The id of the key-broker's statement envelope. */
    admissionId: z.string(),
    /** The key it had before, when this admission rotated it. */
    previousKey: WgPublicKeySchema.optional(),
  }),
  /** A revoked guest was removed from this overlay's every peer. */
  'peer-revoked': OverlayBase.extend({ vmId: IdSchema, reason: z.string() }),
  /** Cut-over: the /32 moved from the source peer to the target peer on every peer. */
  'cut-over-done': Moved,
  /** Rollback of a cut-over: the /32 moved back to the source peer. */
  'cut-over-reverted': Moved,
} as const;
export type OverlayEventName = keyof typeof OVERLAY_EVENTS;
export type OverlayEventData<N extends OverlayEventName> = z.infer<(typeof OVERLAY_EVENTS)[N]>;

/** `ccm.evt.overlay.<overlayId>.<name>`. */
export const overlayEventSubject = (overlayId: string, name: OverlayEventName): string =>
  subjects.evt(OVERLAY_AGGREGATE, overlayId, name);

/** The envelope `type` of an overlay event: `ccm.overlay.<name>`. */
export const overlayEventType = (name: OverlayEventName): string => `ccm.${OVERLAY_AGGREGATE}.${name}`;
