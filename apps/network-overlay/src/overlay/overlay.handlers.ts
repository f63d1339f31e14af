import { Injectable } from '@nestjs/common';
import {
  AdmitPeerRequestSchema,
  AssignWorkloadRequestSchema,
  CreateOverlayRequestSchema,
  DescribeOverlayRequestSchema,
  OVERLAY_VERBS,
  RevokePeerRequestSchema,
  subjects,
  type Peer,
  type SignerName,
} from '@ccm/contracts';
import { OnRequest, type MessageContext } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { Inject } from '@nestjs/common';
import { type DataSource } from 'typeorm';
import { type z } from 'zod';
import { OverlayService } from './overlay.service.js';

/** Who manages overlays: the operator (guest owner tooling through the CLI) and the coordinator. */
const MANAGERS: readonly SignerName[] = ['operator', 'saga-coordinator'];

const on = (verb: string, schema: z.ZodType, allow: readonly SignerName[] = MANAGERS, idempotent = true) =>
  OnRequest({ subject: subjects.cmd('network-overlay', verb), schema, idempotent, allow });

/** The overlay's own commands (OVERLAY_VERBS in libs/contracts); each is idempotent through the inbox. */
@Injectable()
export class OverlayHandlers {
  constructor(
    private readonly overlays: OverlayService,
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
  ) {}

  @on(OVERLAY_VERBS.createOverlay, CreateOverlayRequestSchema, ['operator'])
  create(req: z.infer<typeof CreateOverlayRequestSchema>, ctx: MessageContext) {
    return this.overlays.createOverlay(ctx.manager!, req.overlayId, req.cidr);
  }

  // The vm-lifecycle too: `launch-vm` admits a new guest with the key-broker's statement for it.
  @on(OVERLAY_VERBS.admitPeer, AdmitPeerRequestSchema, [...MANAGERS, 'vm-lifecycle'])
  admit(req: z.infer<typeof AdmitPeerRequestSchema>, ctx: MessageContext): Promise<Peer> {
    return this.overlays.admit(ctx.manager!, req.overlayId, req.admission, { causationId: ctx.envelope.id });
  }

  @on(OVERLAY_VERBS.revokePeer, RevokePeerRequestSchema, ['operator'])
  async revoke(req: z.infer<typeof RevokePeerRequestSchema>, ctx: MessageContext) {
    return {
      vmId: req.vmId,
      removedFrom: await this.overlays.revoke(ctx.manager!, req.vmId, req.reason, {
        causationId: ctx.envelope.id,
      }),
    };
  }

  @on(OVERLAY_VERBS.assignWorkload, AssignWorkloadRequestSchema)
  assign(req: z.infer<typeof AssignWorkloadRequestSchema>, ctx: MessageContext) {
    return this.overlays.assignWorkload(ctx.manager!, req);
  }

  @on(OVERLAY_VERBS.describeOverlay, DescribeOverlayRequestSchema, MANAGERS, false)
  describe(req: z.infer<typeof DescribeOverlayRequestSchema>) {
    return this.overlays.describe(this.ds.manager, req.overlayId);
  }
}
