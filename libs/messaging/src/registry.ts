import {
  Inject,
  Injectable,
  Logger,
  Optional,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { DATA_SOURCE } from '@ccm/persistence';
import {
  CcmError,
  ErrorCodes,
  isServiceName,
  parseSafeJson,
  type Envelope,
  type Reply,
  type SignerName,
} from '@ccm/contracts';
import { DEFAULT_ENVELOPE_MAX_SKEW_MS } from '@ccm/config';
import { type Msg, type Subscription } from '@nats-io/transport-node';
import { type DataSource } from 'typeorm';
import { type z } from 'zod';
import { DurableConsumer, type ConsumerHandler, type ConsumerHealth } from './consumer.js';
import {
  JETSTREAM_CONSUMER,
  REQUEST_HANDLER,
  type ConsumerOptions,
  type JetStreamHandlerOptions,
  type MessageContext,
  type RequestHandlerOptions,
} from './decorators.js';
import { encodeEnvelope, openEnvelope, sealEnvelope } from './envelope-codec.js';
import { Inbox } from './inbox.js';
import { SeenEnvelopes } from './replay.js';
import { MessagingMetrics } from './metrics.js';
import { NatsService } from './nats.service.js';
import { MESSAGING_OPTIONS, type MessagingOptions } from './options.js';

type RequestFn = (data: unknown, ctx: MessageContext) => Promise<unknown>;

/** Unknown failures leave the service as this, never with their internals. */
const internalError = (id: string) =>
  new CcmError(ErrorCodes.Internal, `internal error while handling ${id}; see the service log`, {
    retryable: true,
  });

/** One handler as wired at boot. */
export interface HandlerWiring {
  kind: 'request' | 'consumer';
  /** The request subject, or the consumer's filter subject. */
  subject: string;
  schema: z.ZodType;
  idempotent?: boolean;
  allow?: readonly SignerName[];
  stream?: ConsumerOptions['stream'];
  durable?: string;
  types?: readonly string[];
}

/**
 * Finds every `@OnRequest` and `@OnJetStream` method at boot, logs the wiring once, subscribes them,
 * and at shutdown stops taking work and waits for the messages in hand.
 */
@Injectable()
export class HandlerRegistry implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly log = new Logger('Messaging');
  private readonly subs: Subscription[] = [];
  private readonly consumers: DurableConsumer[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private readonly inbox?: Inbox;
  private readonly maxSkewMs: number;
  /** Ids of requests taken by non-idempotent handlers, remembered until a replay would be stale. */
  private readonly seen: SeenEnvelopes;
  /**
   * Commands being handled in this process, by sender, subject and idempotency key: a repeat that
   * arrives meanwhile (a requester that re-sends an unanswered command) joins the run in hand and
   * gets its reply, instead of acting again or holding a second database connection on the inbox row.
   */
  private readonly running = new Map<string, Promise<Reply>>();
  /** Every handler wired at boot (for operators' logs and for tests that send to each of them). */
  readonly wiring: HandlerWiring[] = [];

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly nats: NatsService,
    private readonly metrics: MessagingMetrics,
    @Inject(MESSAGING_OPTIONS) private readonly opts: MessagingOptions,
    @Optional() @Inject(DATA_SOURCE) private readonly ds?: DataSource,
  ) {
    if (ds && opts.schema) this.inbox = new Inbox(ds, opts.schema);
    this.maxSkewMs = opts.envelopeMaxSkewMs ?? DEFAULT_ENVELOPE_MAX_SKEW_MS;
    this.seen = new SeenEnvelopes(2 * this.maxSkewMs);
    metrics.consumerHealth = () => this.consumerHealth();
  }

  /** Every durable consumer's state: lost and not re-created, or stalled at max-ack-pending. */
  consumerHealth(): Promise<ConsumerHealth[]> {
    return Promise.all(this.consumers.map((c) => c.health()));
  }

  async onApplicationBootstrap(): Promise<void> {
    for (const wrapper of this.discovery.getProviders()) {
      const instance = wrapper.instance as Record<string, unknown> | undefined;
      if (!instance || typeof instance !== 'object' || !wrapper.isDependencyTreeStatic()) continue;
      const proto = Object.getPrototypeOf(instance) as object;
      for (const name of this.scanner.getAllMethodNames(proto)) {
        const method = instance[name] as (...args: unknown[]) => unknown;
        const req = this.reflector.get<RequestHandlerOptions | undefined>(REQUEST_HANDLER, method);
        if (req) this.subscribe(req, method.bind(instance) as RequestFn, instance, `${wrapper.name}.${name}`);
        const declared = this.reflector.get<JetStreamHandlerOptions | undefined>(JETSTREAM_CONSUMER, method);
        const con = typeof declared === 'function' ? declared(instance) : declared;
        if (con) await this.consume(con, method.bind(instance) as ConsumerHandler, `${wrapper.name}.${name}`);
      }
    }
  }

  private subscribe(o: RequestHandlerOptions, fn: RequestFn, instance: object, where: string): void {
    const subject = typeof o.subject === 'function' ? o.subject(instance) : o.subject;
    if (o.idempotent && !this.inbox) throw new Error(`${where}: idempotent handlers need a database`);
    const sub = this.nats.nc.subscribe(subject, { queue: this.opts.service });
    this.subs.push(sub);
    this.wiring.push({
      kind: 'request',
      subject,
      schema: o.schema,
      idempotent: !!o.idempotent,
      allow: o.allow,
    });
    this.log.log(
      `request ${subject} (queue ${this.opts.service}${o.idempotent ? ', idempotent' : ''}${fromWhom(o.allow)}) -> ${where}`,
    );
    void (async () => {
      for await (const m of sub) {
        const p = this.handleRequest(subject, o, fn, m).finally(() => this.inflight.delete(p));
        this.inflight.add(p);
      }
    })();
  }

  private async handleRequest(
    subject: string,
    o: RequestHandlerOptions,
    fn: RequestFn,
    m: Msg,
  ): Promise<void> {
    const end = this.metrics.duration.startTimer({ subject });
    let env: Envelope | undefined;
    let reply: Reply;
    /** A repeat that joined the run in hand: its time is that run's, already timed once. */
    let joinedRun = false;
    try {
      env = openEnvelope(m.data, this.opts.trust, o.schema, {
        subject: m.subject,
        types: [m.subject],
        at: Date.now(),
        maxSkewMs: this.maxSkewMs,
      });
      const e = env;
      // A command's repeat is answered from the inbox by its idempotency key (the stored reply, no
      // second effect, on every replica); any other request is taken once per envelope id.
      if (!o.idempotent) this.seen.admit(e.id);
      if (o.allow && !o.allow.includes(e.source as never)) {
        throw new CcmError(ErrorCodes.Unauthorized, `${e.source} may not send ${m.subject}`, {
          retryable: false,
        });
      }
      const ctx: MessageContext = { subject: m.subject, envelope: e };
      if (o.idempotent && !e.idempotencykey) {
        throw new CcmError(
          ErrorCodes.ValidationFailed,
          `${m.subject} is a command: its envelope needs an idempotencykey`,
          { retryable: false },
        );
      }
      // Counted in flight while the handler runs: not while a repeat waits on the inbox row of a
      // run in another replica, so the gauge names the replica that acts.
      const handle = (c: MessageContext) =>
        this.metrics.inFlight.track({ subject: m.subject, migration: e.correlationid }, () => fn(e.data, c));
      const run = async (): Promise<Reply> =>
        o.idempotent && this.inbox && e.idempotencykey
          ? this.inbox.run(e.idempotencykey, m.subject, (manager) => handle({ ...ctx, manager }))
          : { ok: true, result: (await handle(ctx)) ?? null };
      const key = `${e.source} ${m.subject} ${e.idempotencykey}`;
      joinedRun = !!e.idempotencykey && this.running.has(key);
      reply = await (e.idempotencykey ? this.joined(key, run) : run());
    } catch (err) {
      if (!(err instanceof CcmError)) this.log.error(`${m.subject}: ${(err as Error).stack ?? String(err)}`);
      const error = err instanceof CcmError ? err : internalError(env?.id ?? m.subject);
      if (err instanceof CcmError && err.code !== ErrorCodes.Internal)
        this.log.warn(`${m.subject} refused: ${err.code} ${err.message}`);
      reply = { ok: false, error: error.toPayload() };
    }
    this.metrics.handled.inc({ subject, outcome: reply.ok ? 'ok' : reply.error.code });
    // A re-send waiting on the first delivery's run would count that run's time again.
    if (!joinedRun) end();
    if (!m.reply) return;
    const out = sealEnvelope(this.opts.identity, {
      natssubject: m.reply,
      type: `${m.subject}.reply`,
      data: reply,
      // A refused request is answered too: name its id (when it has one) so the requester takes the reply.
      causationid: env?.id ?? requestIdOf(m.data),
      correlationid: env?.correlationid,
    });
    m.respond(encodeEnvelope(out));
  }

  /** The run in hand for `key`, or `run` started as it. */
  private joined(key: string, run: () => Promise<Reply>): Promise<Reply> {
    let p = this.running.get(key);
    if (!p) {
      p = run();
      this.running.set(key, p);
      const forget = () => void this.running.delete(key);
      p.then(forget, forget);
    }
    return p;
  }

  private async consume(o: ConsumerOptions, fn: ConsumerHandler, where: string): Promise<void> {
    if (!isServiceName(this.opts.service)) throw new Error(`${where}: only services run JetStream consumers`);
    const c = new DurableConsumer(
      {
        service: this.opts.service,
        js: this.nats.js,
        jsm: this.nats.jsm,
        trust: this.opts.trust,
        maxDeliver: this.opts.maxDeliver,
        maxSkewMs: this.maxSkewMs,
        maxPayload: () => this.nats.nc.info?.max_payload,
        connectionClosed: () => this.nats.nc.isClosed(),
        onOutcome: (outcome) => this.metrics.handled.inc({ subject: o.filterSubject, outcome }),
        onDeadLetter: () => this.metrics.deadLettered.inc({ consumer: o.durable }),
      },
      o,
      (data, ctx) =>
        this.metrics.inFlight.track({ subject: ctx.subject, migration: ctx.envelope.correlationid }, () =>
          fn(data, ctx),
        ),
    );
    await c.start();
    this.consumers.push(c);
    this.wiring.push({
      kind: 'consumer',
      subject: o.filterSubject,
      schema: o.schema,
      stream: o.stream,
      durable: o.durable,
      allow: o.allow,
      types: o.types,
    });
    this.log.log(
      `consumer ${o.durable} on ${o.filterSubject} (stream ${o.stream}${fromWhom(o.allow)}) -> ${where}`,
    );
  }

  /** Stop taking work: drain subscriptions and consumers, then wait for handlers in flight. */
  async beforeApplicationShutdown(): Promise<void> {
    await Promise.allSettled(this.subs.map((s) => s.drain()));
    await Promise.allSettled(this.consumers.map((c) => c.stop()));
    await Promise.allSettled([...this.inflight]);
    this.log.log('handlers stopped');
  }
}

/** `, from a|b` when a handler takes messages from those signers only (the wiring log states it). */
const fromWhom = (allow?: readonly string[]): string => (allow ? `, from ${allow.join('|')}` : '');

/** The `id` of a request that was refused before it was opened, if its text has a string one. */
function requestIdOf(bytes: Uint8Array): string | undefined {
  try {
    const id = (parseSafeJson(new TextDecoder().decode(bytes)) as { id?: unknown } | null)?.id;
    return typeof id === 'string' && id.length <= 200 ? id : undefined;
  } catch {
    return undefined;
  }
}
