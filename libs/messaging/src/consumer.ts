import { Logger } from '@nestjs/common';
import { CcmError, ErrorCodes, STREAMS, subjects, type ServiceName } from '@ccm/contracts';
import {
  AckPolicy,
  DeliverPolicy,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import { type Outcome, type ConsumerOptions, type MessageContext } from './decorators.js';
import { openEnvelope } from './envelope-codec.js';
import { type TrustStore } from '@ccm/keys';

/** First redelivery delay after a failure; doubles per delivery up to {@link MAX_RETRY_DELAY_MS}. */
export const BASE_RETRY_DELAY_MS = 200;
export const MAX_RETRY_DELAY_MS = 30_000;
export const DEFAULT_ACK_WAIT_MS = 30_000;
const NS_PER_MS = 1_000_000;

export function retryDelayMs(deliveryCount: number): number {
  return Math.min(BASE_RETRY_DELAY_MS * 2 ** Math.max(0, deliveryCount - 1), MAX_RETRY_DELAY_MS);
}

export type ConsumerHandler = (data: unknown, ctx: MessageContext) => Promise<Outcome>;

export interface ConsumerDeps {
  service: ServiceName;
  js: JetStreamClient;
  jsm: JetStreamManager;
  trust: TrustStore;
  maxDeliver: number;
  onOutcome?: (outcome: string) => void;
  onDeadLetter?: () => void;
}

/**
 * A durable pull consumer with explicit outcomes. Each message is acked, nak'ed with a delay, or
 * parked: poison (unparseable, unsigned, tampered, invalid, unauthorized), a non-retryable failure, a
 * handler `term`, or a message that reached `maxDeliver` deliveries is published to
 * `ccm.dlq.<service>.<durable>` with the reason in headers, then terminated, so nothing is lost.
 */
export class DurableConsumer {
  private readonly log: Logger;
  private messages?: ConsumerMessages;
  private loop?: Promise<void>;
  private readonly inflight = new Set<Promise<void>>();
  private readonly maxDeliver: number;

  constructor(
    private readonly deps: ConsumerDeps,
    private readonly opts: ConsumerOptions,
    private readonly handler: ConsumerHandler,
  ) {
    this.log = new Logger(`Consumer:${opts.durable}`);
    this.maxDeliver = opts.maxDeliver ?? deps.maxDeliver;
  }

  async start(): Promise<void> {
    const stream = STREAMS[this.opts.stream].name;
    const config = {
      durable_name: this.opts.durable,
      filter_subject: this.opts.filterSubject,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: (this.opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS) * NS_PER_MS,
      // Redelivery is bounded by this class (it parks the message), so a crash on the last delivery
      // still ends in the dead-letter subject instead of a silently stuck message.
      max_deliver: -1,
      max_ack_pending: 1000,
    };
    try {
      await this.deps.jsm.consumers.info(stream, this.opts.durable);
      await this.deps.jsm.consumers.update(stream, this.opts.durable, {
        ack_wait: config.ack_wait,
        max_deliver: -1,
      });
    } catch {
      await this.deps.jsm.consumers.add(stream, config).catch(async (err: unknown) => {
        // another replica created it meanwhile
        await this.deps.jsm.consumers.info(stream, this.opts.durable).catch(() => {
          throw err;
        });
      });
    }
    const consumer = await this.deps.js.consumers.get(stream, this.opts.durable);
    const concurrency = this.opts.concurrency ?? 1;
    this.messages = await consumer.consume({ max_messages: Math.max(1, concurrency) });
    this.loop = (async () => {
      for await (const m of this.messages!) {
        const p = this.process(m).finally(() => this.inflight.delete(p));
        this.inflight.add(p);
        if (this.inflight.size >= concurrency) await Promise.race(this.inflight);
      }
    })();
  }

  private async process(m: JsMsg): Promise<void> {
    const deliveries = m.info.deliveryCount;
    if (deliveries > this.maxDeliver) {
      return this.park(m, `delivered ${deliveries - 1} times without success (max ${this.maxDeliver})`);
    }
    let outcome: Outcome;
    /** Why the handler failed, when it threw: kept in the reason if the message ends parked. */
    let failure: string | undefined;
    try {
      const env = openEnvelope(m.data, this.deps.trust, this.opts.schema);
      if (this.opts.allow && !this.opts.allow.includes(env.source as never)) {
        throw new CcmError(ErrorCodes.Unauthorized, `${env.source} may not send ${m.subject}`, {
          retryable: false,
        });
      }
      outcome = await this.handler(env.data, {
        subject: m.subject,
        envelope: env,
        deliveryCount: deliveries,
      });
    } catch (err) {
      const retryable = !(err instanceof CcmError) || err.retryable;
      const reason =
        err instanceof CcmError ? `${err.code}: ${err.message}` : `handler failed: ${(err as Error).message}`;
      if (!(err instanceof CcmError))
        this.log.error(`${m.subject} #${m.seq}: ${(err as Error).stack ?? String(err)}`);
      failure = reason;
      outcome = retryable ? { kind: 'nak', delayMs: retryDelayMs(deliveries) } : { kind: 'term', reason };
    }
    // The last allowed delivery: a retry (asked for or after a failure) becomes parking instead.
    if (outcome.kind === 'nak' && deliveries >= this.maxDeliver) {
      outcome = {
        kind: 'term',
        reason: failure
          ? `${failure} (after ${deliveries} deliveries)`
          : `handler asked to retry after ${deliveries} deliveries (max ${this.maxDeliver})`,
      };
    }
    this.deps.onOutcome?.(outcome.kind);
    if (outcome.kind === 'ack') await m.ackAck();
    else if (outcome.kind === 'nak') m.nak(outcome.delayMs);
    else await this.park(m, outcome.reason);
  }

  private async park(m: JsMsg, reason: string): Promise<void> {
    const h = headers();
    h.set('Ccm-Dlq-Reason', reason.slice(0, 1000).replace(/[\r\n]/g, ' '));
    h.set('Ccm-Dlq-Subject', m.subject);
    h.set('Ccm-Dlq-Stream-Seq', String(m.seq));
    h.set('Ccm-Dlq-Deliveries', String(m.info.deliveryCount));
    try {
      await this.deps.js.publish(subjects.dlq(this.deps.service, this.opts.durable), m.data, {
        msgID: `${m.info.stream}:${m.seq}`,
        headers: h,
      });
    } catch (err) {
      // Not parked: leave it for redelivery rather than lose it.
      this.log.error(`cannot park ${m.subject} #${m.seq}: ${(err as Error).message}`);
      m.nak(MAX_RETRY_DELAY_MS);
      return;
    }
    this.deps.onDeadLetter?.();
    this.log.warn(`parked ${m.subject} #${m.seq} on the dead-letter subject: ${reason}`);
    m.term(reason.slice(0, 200));
  }

  /** Stops pulling, then waits for the messages in hand. */
  async stop(): Promise<void> {
    this.messages?.stop();
    await this.loop?.catch(() => undefined);
    await Promise.allSettled([...this.inflight]);
  }
}
