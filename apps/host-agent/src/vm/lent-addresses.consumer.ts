import { Inject, Injectable, Logger } from '@nestjs/common';
import { DEFAULT_ENVELOPE_MAX_SKEW_MS } from '@ccm/config';
import { ErrorCodes, HOST_EVENTS, hostAgentConsumers, type VmPhase } from '@ccm/contracts';
import {
  ack,
  MESSAGING_OPTIONS,
  OnJetStream,
  unlessPinnedTo,
  type MessageContext,
  type MessagingOptions,
  type Outcome,
} from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { z } from 'zod';
import { type HostAgentConfig } from '../config.js';
import { VmService } from './vm.service.js';

/** Anything: the data is checked against `vm-changed` here, so bad data is logged and acked, not parked. */
const AnyData = z.unknown();

/** Phases a VM ends in on its host; whether its guest ended too depends on where it came from. */
const ENDS: ReadonlySet<VmPhase> = new Set(['Destroyed', 'Died', 'Failed']);
/** Phases in which the guest has not arrived on the host: ending there does not end the guest. */
const NOT_ARRIVED: ReadonlySet<VmPhase> = new Set(['Starting', 'Incoming']);

/**
 * Whether a `vm-changed` says the guest itself ended on that host: the VM was destroyed, died or failed
 * after it ran there. A destination that fails or is removed before the guest arrived (`previous`
 * Starting or Incoming) ends nothing: the guest is still at its source. A move on (`MigratedAway`) ends
 * nothing either: the guest runs on elsewhere, and its next host's end is the one that counts.
 */
export function guestEnded(phase: VmPhase, previous: VmPhase | undefined): boolean {
  return ENDS.has(phase) && previous !== undefined && !NOT_ARRIVED.has(previous);
}

/**
 * Frees the guest addresses this host lent to VMs that moved away (`VmRecord.guestNetLentAt`) once
 * their guest ends on another host: every host-agent's `ccm.evt.host.<hostId>.vm-changed` through this
 * host's own durable consumer (`lent-addresses-<hostId>`, libs/contracts consumers.ts), so an end
 * published while this agent was down is read when it is back. An event counts only when a host-agent
 * pinned to the host it is about signed it (NATS keeps a pinned host-agent to its own subjects; this
 * refuses what an unpinned or mis-scoped key signed): others are parked. Data that is not a
 * `vm-changed` is logged and acked. Runs only on a host with a guest network (CCM_GUEST_NET).
 */
@Injectable()
export class LentAddresses {
  private readonly log = new Logger('LentAddresses');

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: HostAgentConfig,
    @Inject(MESSAGING_OPTIONS) private readonly messaging: MessagingOptions,
    private readonly vms: VmService,
  ) {}

  @OnJetStream((self) => {
    const me = self as LentAddresses;
    if (!me.config.CCM_GUEST_NET) return undefined;
    return {
      ...hostAgentConsumers(me.config.CCM_HOST_ID)[0],
      schema: AnyData,
      allow: ['host-agent'],
      types: ['ccm.host.vm-changed'],
    };
  })
  async onVmChanged(data: unknown, ctx: MessageContext): Promise<Outcome> {
    const subjectHost = ctx.subject.split('.')[3];
    const refused = unlessPinnedTo(this.messaging.trust, ctx.envelope, subjectHost, ctx.subject);
    if (refused) return refused;
    const parsed = HOST_EVENTS['vm-changed'].safeParse(data);
    if (!parsed.success || parsed.data.hostId !== subjectHost) {
      const why = parsed.success ? `about host ${parsed.data.hostId}` : z.prettifyError(parsed.error);
      this.log.warn(
        `${ErrorCodes.ValidationFailed}: ${ctx.subject} #${ctx.streamSeq ?? '?'} ignored: ${why}`,
      );
      return ack();
    }
    const e = parsed.data;
    if (e.hostId === this.config.CCM_HOST_ID || !guestEnded(e.phase, e.previous)) return ack();
    const skew = this.messaging.envelopeMaxSkewMs ?? DEFAULT_ENVELOPE_MAX_SKEW_MS;
    const freed = await this.vms.endLending(e.vmId, new Date(e.at), skew);
    if (freed)
      this.log.log(`VM ${e.vmId} ended on ${e.hostId} (${e.phase}): its guest address ${freed} is free`);
    return ack();
  }
}
