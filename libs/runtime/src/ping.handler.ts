import { Inject, Injectable } from '@nestjs/common';
import {
  PING_VERB,
  PINGED_EVENT,
  PingRequestSchema,
  subjects,
  type PingReply,
  type PingRequest,
  type ServiceName,
} from '@ccm/contracts';
import {
  MESSAGING_OPTIONS,
  MessageBus,
  OnRequest,
  OutboxService,
  type MessageContext,
  type MessagingOptions,
} from '@ccm/messaging';

/**
 * `ccm.cmd.<service>.ping`, answered by every service: counts the ping in its database and writes a
 * `pinged` event through the outbox in the same transaction (services without a database count in
 * memory and publish the event directly). Proves NATS, keys, database and outbox are wired.
 */
@Injectable()
export class PingHandler {
  private memoryCount = 0;

  constructor(
    @Inject(MESSAGING_OPTIONS) private readonly opts: MessagingOptions,
    private readonly outbox: OutboxService,
    private readonly bus: MessageBus,
  ) {}

  /** The subject for this service (guest-agents and host-agents have theirs under their id). */
  static subjectFor(self: object): string {
    return (self as PingHandler).pingSubject();
  }

  pingSubject(): string {
    const { service, scopeId } = this.opts;
    if (service === 'host-agent') return subjects.hostCmd(scopeId ?? 'unset', PING_VERB);
    if (service === 'guest-agent') return subjects.guestCmd(scopeId ?? 'unset', PING_VERB);
    return subjects.cmd(service as ServiceName, PING_VERB);
  }

  @OnRequest({ subject: PingHandler.subjectFor, schema: PingRequestSchema, idempotent: false })
  async ping(req: PingRequest, ctx: MessageContext): Promise<PingReply> {
    const service = this.opts.service;
    const event = {
      type: `ccm.service.${PINGED_EVENT}`,
      causationid: ctx.envelope.id,
      correlationid: ctx.envelope.correlationid,
    };
    const eventSubject = subjects.evt('service', service, PINGED_EVENT);
    let count: number;
    if (this.outbox.hasDatabase()) {
      count = await this.countInDb(req, eventSubject, event);
    } else {
      count = ++this.memoryCount;
      await this.bus.publish(eventSubject, {
        ...event,
        data: { service, instanceId: this.opts.instanceId, echo: req.message, count },
      });
    }
    return {
      service,
      instanceId: this.opts.instanceId,
      echo: req.message,
      count,
      at: new Date().toISOString(),
    };
  }

  private async countInDb(
    req: PingRequest,
    eventSubject: string,
    event: { type: string; causationid?: string; correlationid?: string },
  ): Promise<number> {
    return this.outbox.transaction(async (manager) => {
      const rows = await manager.query<Array<{ count: number }>>(
        `INSERT INTO "${this.opts.schema}".ping (instance_id, count, last_at) VALUES ($1, 1, now())
         ON CONFLICT (instance_id) DO UPDATE SET count = ping.count + 1, last_at = now() RETURNING count`,
        [this.opts.instanceId],
      );
      const count = rows[0].count;
      await this.outbox.enqueue(manager, eventSubject, {
        ...event,
        data: { service: this.opts.service, instanceId: this.opts.instanceId, echo: req.message, count },
      });
      return count;
    });
  }
}
