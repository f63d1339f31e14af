import { Inject, Injectable, Logger } from '@nestjs/common';
import {
  durableConsumer,
  ErrorCodes,
  HOST_EVENTS,
  IdSchema,
  validationError,
  type HostEventName,
} from '@ccm/contracts';
import {
  ack,
  MESSAGING_OPTIONS,
  OnJetStream,
  term,
  unlessPinnedTo,
  type MessageContext,
  type MessagingOptions,
  type Outcome,
} from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { type DataSource } from 'typeorm';
import { z } from 'zod';
import { applyHeartbeat, applyRegistered, firstApplication, observe } from './store.js';

const NAMES = Object.keys(HOST_EVENTS) as HostEventName[];
/** What every host event has; the rest is checked against the event's own schema by its name. */
const HostEventSchema = z.object({ hostId: IdSchema }).loose();

/**
 * The host registry's intake: every host-agent's `ccm.evt.host.<hostId>.registered|heartbeat|vm-changed`
 * from CCM_EVENTS through the durable `host-registry` consumer (libs/contracts consumers.ts). An event
 * is taken only from a host-agent whose signing key is pinned to that very host (`trust.json` scope),
 * about that host: NATS already keeps a pinned host-agent to its own subjects, and this check refuses
 * what an unpinned or mis-scoped key signed. Refused or malformed events are parked on the dead-letter
 * subject, unapplied. Delivery is at least once: registrations and VM phase changes are applied once per
 * envelope id (`applied_event`), heartbeats only ever move `last_seen_at` forward.
 */
@Injectable()
export class HostEventsConsumer {
  private readonly log = new Logger('HostRegistry');

  constructor(
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
    @Inject(MESSAGING_OPTIONS) private readonly messaging: MessagingOptions,
  ) {}

  @OnJetStream({
    ...durableConsumer('vm-lifecycle', 'host-registry'),
    schema: HostEventSchema,
    allow: ['host-agent'],
    types: NAMES.map((n) => `ccm.host.${n}`),
  })
  async apply(data: z.infer<typeof HostEventSchema>, ctx: MessageContext): Promise<Outcome> {
    const [, , , subjectHost, name] = ctx.subject.split('.');
    const refused = unlessPinnedTo(this.messaging.trust, ctx.envelope, subjectHost, ctx.subject);
    if (refused) return refused;
    if (data.hostId !== subjectHost) {
      return term(`${ErrorCodes.Unauthorized}: ${ctx.subject} is about host ${data.hostId}`);
    }
    if (!NAMES.includes(name as HostEventName)) return term(`not a host event: ${ctx.subject}`);
    const event = name as HostEventName;
    const parsed = HOST_EVENTS[event].safeParse(data);
    if (!parsed.success) throw validationError(`${ctx.subject}`, parsed.error.issues);
    return this.ds.transaction(async (m) => {
      if (event === 'heartbeat') {
        const applied = await applyHeartbeat(m, parsed.data as z.infer<(typeof HOST_EVENTS)['heartbeat']>);
        if (!applied) this.log.debug(`heartbeat of ${subjectHost} not applied: unregistered or older`);
        return ack();
      }
      if (!(await firstApplication(m, ctx.envelope.id, ctx.subject, ctx.streamSeq))) return ack();
      if (event === 'registered') {
        await applyRegistered(m, parsed.data as z.infer<(typeof HOST_EVENTS)['registered']>);
        this.log.log(`host ${subjectHost} registered`);
      } else {
        const e = parsed.data as z.infer<(typeof HOST_EVENTS)['vm-changed']>;
        await observe(m, e.hostId, e.vmId, e.phase, e.at, e.reason);
      }
      return ack();
    });
  }
}
