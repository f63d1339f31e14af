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
import { SeenEnvelopes } from './replay.js';
import { type TrustStore } from '@ccm/keys';

/** First redelivery delay after a failure; doubles per delivery up to {@link MAX_RETRY_DELAY_MS}. */
export const BASE_RETRY_DELAY_MS = 200;
export const MAX_RETRY_DELAY_MS = 30_000;
export const DEFAULT_ACK_WAIT_MS = 30_000;
const NS_PER_MS = 1_000_000;
/** The server hands out at most this many unacknowledged messages of one consumer, over all replicas. */
const MAX_ACK_PENDING = 1000;
/** What a service reports about one of its consumers on /health and /metrics. */
export interface ConsumerHealth {
  durable: string;
  stream: string;
  /** The server lost it and it could not be re-created yet (`error` says why). */
  lost: boolean;
  error?: string;
  /** Unacknowledged messages the server counts against max-ack-pending; `undefined` when unknown. */
  ackPending?: number;
  /** Messages waiting in the stream for this consumer. */
  pending?: number;
  /** At max-ack-pending: the server hands out nothing more until something is settled. */
  stalled: boolean;
}

/** Pull statuses that mean the server has lost the consumer (or its stream). */
const LOST = new Set<string>(['consumer_deleted', 'consumer_not_found', 'stream_not_found']);
/** How long a consumer remembers the envelope ids it took (and at most how many, see SeenEnvelopes). */
const SEEN_WINDOW_MS = 24 * 3600_000;
/** Room kept for the headers of a dead-letter copy below the server's max_payload. */
const DLQ_HEADER_ROOM = 2048;
/** max_payload when the server did not say (nats-server's default, 1 MiB). */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

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
  /** How far an envelope's time may be from when the server stored the message. */
  maxSkewMs?: number;
  /** The server's max_payload, which a dead-letter copy (message plus headers) must fit. */
  maxPayload?: () => number | undefined;
  /** True once the NATS connection is closed for good: nothing to re-create a consumer on. */
  connectionClosed?: () => boolean;
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
  private stopping = false;
  /** Stream seqs delivered here and not yet acked or parked (in flight, or nak'ed for redelivery). */
  private readonly unsettled = new Set<number>();
  /** Highest stream seq delivered here, and the server's ack floor when we last looked. */
  private maxSeen = 0;
  private ackFloor = 0;
  /** Envelope ids taken here, by stream seq: a redelivery keeps its seq, a replay gets a new one. */
  private readonly seen = new SeenEnvelopes(SEEN_WINDOW_MS);
  /** Why the consumer could not be re-created, while it cannot. */
  private lostError?: string;

  constructor(
    private readonly deps: ConsumerDeps,
    private readonly opts: ConsumerOptions,
    private readonly handler: ConsumerHandler,
  ) {
    this.log = new Logger(`Consumer:${opts.durable}`);
    this.maxDeliver = opts.maxDeliver ?? deps.maxDeliver;
  }

  /** Ensures the durable exists and starts pulling; a consumer lost later is re-created (see {@link run}). */
  async start(): Promise<void> {
    await this.ensureDurable();
    await this.pull();
    this.loop = this.run();
  }

  /**
   * Creates the durable, or brings an existing one to our settings; safe against a concurrent replica.
   * A new durable starts at the stream's beginning, or at `resumeAt` when it replaces one that was lost.
   * On a work-queue stream it always delivers all: the server refuses any other start there, and what
   * was acknowledged is already gone from the stream, so nothing handled comes again.
   */
  private async ensureDurable(resumeAt?: number): Promise<void> {
    const stream = STREAMS[this.opts.stream].name;
    const config = {
      durable_name: this.opts.durable,
      filter_subject: this.opts.filterSubject,
      ack_policy: AckPolicy.Explicit,
      ...(resumeAt
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: resumeAt }
        : { deliver_policy: DeliverPolicy.All }),
      ack_wait: (this.opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS) * NS_PER_MS,
      // Redelivery is bounded by this class (it parks the message), so a crash on the last delivery
      // still ends in the dead-letter subject instead of a silently stuck message.
      max_deliver: -1,
      max_ack_pending: MAX_ACK_PENDING,
    };
    try {
      const info = await this.deps.jsm.consumers.info(stream, this.opts.durable);
      this.ackFloor = Math.max(this.ackFloor, info.ack_floor.stream_seq);
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
  }

  private async pull(): Promise<void> {
    const consumer = await this.deps.js.consumers.get(STREAMS[this.opts.stream].name, this.opts.durable);
    const messages = await consumer.consume({ max_messages: Math.max(1, this.opts.concurrency ?? 1) });
    this.messages = messages;
    // The client keeps pulling from a consumer the server no longer has; end this pull so run()
    // re-creates the durable.
    void (async () => {
      for await (const s of messages.status()) {
        if (LOST.has(s.type)) {
          this.log.warn(`consumer ${this.opts.durable}: ${s.type}`);
          messages.stop();
        }
      }
    })().catch(() => undefined);
  }

  /**
   * Hands messages to the handler, at most `concurrency` at a time. The pull ends only when we stop
   * or the server loses the consumer (deleted by an operator, a stream restored): then the durable is
   * re-created and pulling resumes, with a growing pause while the server refuses, so a service never
   * sits healthy while its consumer is gone.
   */
  private async run(): Promise<void> {
    const concurrency = this.opts.concurrency ?? 1;
    const over = () => this.stopping || (this.deps.connectionClosed?.() ?? false);
    while (!over()) {
      try {
        for await (const m of this.messages!) {
          const p = this.process(m).finally(() => this.inflight.delete(p));
          this.inflight.add(p);
          if (this.inflight.size >= concurrency) await Promise.race(this.inflight);
        }
      } catch (err) {
        if (!over()) this.log.warn(`pulling from ${this.opts.durable} failed: ${(err as Error).message}`);
      }
      if (over()) break;
      // A work-queue stream (CCM_REQUESTS) keeps only unacknowledged messages and refuses any start but
      // deliver-all: the re-created consumer takes them all.
      const resumeAt = STREAMS[this.opts.stream] === STREAMS.requests ? undefined : this.resumeAt();
      this.log.warn(
        `consumer ${this.opts.durable} ended without being stopped; re-creating it from ${resumeAt ? `stream seq ${resumeAt}` : 'the work queue'}`,
      );
      for (let failures = 0; ;) {
        try {
          await this.ensureDurable(resumeAt);
          await this.pull();
          this.lostError = undefined;
          break;
        } catch (err) {
          failures++;
          // Reported on /health until it works: a service never sits healthy without its consumer.
          this.lostError = (err as Error).message;
          this.log.error(`cannot re-create consumer ${this.opts.durable}: ${this.lostError}`);
          await new Promise((r) => setTimeout(r, retryDelayMs(failures)));
          if (over()) return;
        }
      }
    }
  }

  /** Where a re-created durable starts: the oldest message not settled here, else after the newest. */
  private resumeAt(): number {
    return this.unsettled.size ? Math.min(...this.unsettled) : Math.max(this.maxSeen, this.ackFloor) + 1;
  }

  private async process(m: JsMsg): Promise<void> {
    this.unsettled.add(m.seq);
    // A message nak'ed here may be settled by another replica; more than the server can have pending
    // means the oldest entries are such, so they go.
    if (this.unsettled.size > MAX_ACK_PENDING) this.unsettled.delete(Math.min(...this.unsettled));
    this.maxSeen = Math.max(this.maxSeen, m.seq);
    const deliveries = m.info.deliveryCount;
    if (deliveries > this.maxDeliver) {
      return this.park(m, `delivered ${deliveries - 1} times without success (max ${this.maxDeliver})`);
    }
    let outcome: Outcome;
    /** Why the handler failed, when it threw: kept in the reason if the message ends parked. */
    let failure: string | undefined;
    try {
      const env = this.open(m);
      if (this.opts.allow && !this.opts.allow.includes(env.source as never)) {
        throw new CcmError(ErrorCodes.Unauthorized, `${env.source} may not send ${m.subject}`, {
          retryable: false,
        });
      }
      outcome = await this.handler(env.data, {
        subject: m.subject,
        envelope: env,
        raw: m.data,
        deliveryCount: deliveries,
        streamSeq: m.seq,
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
    try {
      if (outcome.kind === 'ack') {
        await m.ackAck();
        this.unsettled.delete(m.seq);
      } else if (outcome.kind === 'nak') m.nak(outcome.delayMs);
      else await this.park(m, outcome.reason);
    } catch (err) {
      // The server did not confirm: the message comes back after ack_wait, and handlers are idempotent.
      this.log.warn(`${m.subject} #${m.seq}: ${outcome.kind} not confirmed: ${(err as Error).message}`);
    }
  }

  /**
   * Opens a stream message: signed for the subject it was stored under, of a type this consumer takes,
   * published with its envelope id as Nats-Msg-Id (so the server's duplicate window drops a replay),
   * dated no later than the server stored it plus the skew (and, for intake requests, no earlier than
   * that minus the skew; events may be relayed late from an outbox), and not an id taken here before
   * under another stream seq. Every refusal is a typed, non-retryable CcmError: parked at once.
   */
  private open(m: JsMsg) {
    const skew = this.deps.maxSkewMs;
    const env = openEnvelope(m.data, this.deps.trust, this.opts.schema, {
      subject: m.subject,
      types: this.opts.types,
      at: Math.floor(m.info.timestampNanos / NS_PER_MS),
      maxSkewMs: skew,
      maxAgeMs: this.opts.stream === 'events' ? Infinity : skew,
    });
    const msgId = m.headers?.get('Nats-Msg-Id');
    if (msgId !== env.id) {
      throw new CcmError(
        ErrorCodes.Replayed,
        `envelope ${env.id} was published with Nats-Msg-Id ${JSON.stringify(msgId ?? '')}, not its own id`,
        { retryable: false },
      );
    }
    this.seen.admit(env.id, m.seq);
    return env;
  }

  /**
   * Publishes the dead-letter copy: the message with the reason in headers. A message too big to carry
   * those headers under the server's max_payload is copied in parts (`Ccm-Dlq-Part: i/n`, each with
   * the same headers and `Ccm-Dlq-Original-Bytes`), so nothing is lost.
   */
  private async publishDeadLetter(m: JsMsg, reason: string): Promise<void> {
    const h = () => {
      const x = headers();
      x.set('Ccm-Dlq-Reason', reason.slice(0, 1000).replace(/[\r\n]/g, ' '));
      x.set('Ccm-Dlq-Subject', m.subject);
      x.set('Ccm-Dlq-Stream-Seq', String(m.seq));
      x.set('Ccm-Dlq-Deliveries', String(m.info.deliveryCount));
      return x;
    };
    const subject = subjects.dlq(this.deps.service, this.opts.durable);
    // Per consumer: two consumers that park the same stream message (chain-witness and a progress
    // consumer both read CCM_EVENTS) each keep their copy; the server's duplicate window would drop one.
    const msgID = `${m.info.stream}:${this.opts.durable}:${m.seq}`;
    const room = (this.deps.maxPayload?.() ?? DEFAULT_MAX_PAYLOAD) - DLQ_HEADER_ROOM;
    if (m.data.length <= room) {
      await this.deps.js.publish(subject, m.data, { msgID, headers: h() });
      return;
    }
    const parts = Math.ceil(m.data.length / room);
    for (let i = 0; i < parts; i++) {
      const part = h();
      part.set('Ccm-Dlq-Part', `${i + 1}/${parts}`);
      part.set('Ccm-Dlq-Original-Bytes', String(m.data.length));
      await this.deps.js.publish(subject, m.data.subarray(i * room, (i + 1) * room), {
        msgID: `${msgID}:${i + 1}`,
        headers: part,
      });
    }
  }

  private async park(m: JsMsg, reason: string): Promise<void> {
    try {
      await this.publishDeadLetter(m, reason);
    } catch (err) {
      // Not parked: leave it for redelivery rather than lose it.
      this.log.error(`cannot park ${m.subject} #${m.seq}: ${(err as Error).message}`);
      m.nak(MAX_RETRY_DELAY_MS);
      return;
    }
    this.deps.onDeadLetter?.();
    this.unsettled.delete(m.seq);
    this.log.warn(`parked ${m.subject} #${m.seq} on the dead-letter subject: ${reason}`);
    // A bare TERM: nats-server 2.9 ignores `+TERM <reason>` and would redeliver the message forever;
    // the reason is in the parked copy's headers.
    m.term();
  }

  /** Lost (and why), and whether the server has stopped handing it messages (at max-ack-pending). */
  async health(): Promise<ConsumerHealth> {
    const stream = STREAMS[this.opts.stream].name;
    const base = { durable: this.opts.durable, stream };
    if (this.lostError) return { ...base, lost: true, error: this.lostError, stalled: false };
    try {
      const info = await this.deps.jsm.consumers.info(stream, this.opts.durable);
      const max = info.config.max_ack_pending ?? MAX_ACK_PENDING;
      return {
        ...base,
        lost: false,
        ackPending: info.num_ack_pending,
        pending: info.num_pending,
        stalled: max > 0 && info.num_ack_pending >= max,
      };
    } catch (err) {
      return { ...base, lost: true, error: (err as Error).message, stalled: false };
    }
  }

  /** Stops pulling, then waits for the messages in hand. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.messages?.stop();
    await this.loop?.catch(() => undefined);
    await Promise.allSettled([...this.inflight]);
  }
}
