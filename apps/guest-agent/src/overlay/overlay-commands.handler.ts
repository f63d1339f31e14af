import { Inject, Injectable } from '@nestjs/common';
import {
  GUEST_VERBS,
  GuestOverlayAddressSchema,
  GuestOverlayPeersSchema,
  GuestOverlaySamplesSchema,
  GuestOverlayUpSchema,
  GuestOverlayWatchSchema,
  type GuestVerb,
  type SignerName,
  subjects,
} from '@ccm/contracts';
import { OnRequest } from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { z } from 'zod';
import { type GuestAgentConfig } from '../config.js';
import { GuestOverlay } from './guest-overlay.service.js';

/** Who changes the guest's overlay interface: the network-overlay alone. */
const OVERLAY: readonly SignerName[] = ['network-overlay'];
/** Who may read it too: the operator. */
const READERS: readonly SignerName[] = [...OVERLAY, 'operator'];

const on = (verb: GuestVerb, schema: z.ZodType, allow: readonly SignerName[] = OVERLAY) =>
  OnRequest({
    subject: (self) => subjects.guestCmd((self as GuestOverlayCommands).vmId, verb),
    schema,
    allow: [...allow],
  });

const Empty = z.object({}).loose();

/**
 * The guest side of the overlay on `ccm.cmd.guest.<vmId>.overlay-*` (libs/contracts guest-overlay.ts).
 * Each is idempotent by what it names: the interface, a peer set, an address, a watch id.
 */
@Injectable()
export class GuestOverlayCommands {
  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: GuestAgentConfig,
    private readonly overlay: GuestOverlay,
  ) {}

  get vmId(): string {
    return this.config.CCM_VM_ID;
  }

  @on(GUEST_VERBS.overlayUp, GuestOverlayUpSchema)
  up(req: z.infer<typeof GuestOverlayUpSchema>) {
    return this.overlay.up(req);
  }

  @on(GUEST_VERBS.overlayPeers, GuestOverlayPeersSchema)
  peers(req: z.infer<typeof GuestOverlayPeersSchema>) {
    return this.overlay.setPeers(req.peers);
  }

  @on(GUEST_VERBS.overlayAddress, GuestOverlayAddressSchema)
  address(req: z.infer<typeof GuestOverlayAddressSchema>) {
    return this.overlay.address(req.ip, req.present);
  }

  @on(GUEST_VERBS.overlayDown, Empty)
  down() {
    return this.overlay.down();
  }

  @on(GUEST_VERBS.overlayState, Empty, READERS)
  state() {
    return this.overlay.state();
  }

  @on(GUEST_VERBS.overlayWatch, GuestOverlayWatchSchema)
  watch(req: z.infer<typeof GuestOverlayWatchSchema>) {
    return Promise.resolve(this.overlay.watch(req));
  }

  @on(GUEST_VERBS.overlaySamples, GuestOverlaySamplesSchema)
  samples(req: z.infer<typeof GuestOverlaySamplesSchema>) {
    return this.overlay.samples(req);
  }
}
