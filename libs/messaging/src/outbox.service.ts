import {
  Inject,
  Injectable,
  Optional,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { DATA_SOURCE } from '@ccm/persistence';
import { type Envelope } from '@ccm/contracts';
import { type DataSource, type EntityManager } from 'typeorm';
import { type EnvelopeFields } from './envelope-codec.js';
import { publisherName } from './chain.js';
import { MessagingMetrics } from './metrics.js';
import { NatsService } from './nats.service.js';
import { MESSAGING_OPTIONS, type MessagingOptions } from './options.js';
import { Outbox, OutboxRelay } from './outbox.js';

/** The service's outbox and its relay, wired to its schema, NATS and metrics. */
@Injectable()
export class OutboxService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private outbox?: Outbox;
  private relay?: OutboxRelay;

  constructor(
    private readonly nats: NatsService,
    private readonly metrics: MessagingMetrics,
    @Inject(MESSAGING_OPTIONS) private readonly opts: MessagingOptions,
    @Optional() @Inject(DATA_SOURCE) private readonly ds?: DataSource,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.ds || !this.opts.schema) return;
    const publisher = publisherName(this.opts.service, this.opts.scopeId);
    this.relay = new OutboxRelay(this.ds, this.nats.js, this.opts.schema, {
      pollMs: this.opts.outboxPollMs,
      publisher,
      onRelayed: (n) => this.metrics.outboxRelayed.inc(n),
    });
    this.outbox = new Outbox(this.opts.identity, this.opts.schema, () => this.relay?.kick(), publisher);
    this.relay.start();
  }

  /** True when the service has a database, so events go through the outbox. */
  hasDatabase(): boolean {
    return !!this.ds && !!this.opts.schema;
  }

  /** Runs `fn` in a database transaction; enqueue events with the manager it gets. */
  transaction<T>(fn: (manager: EntityManager) => Promise<T>): Promise<T> {
    if (!this.ds) throw new Error('this service has no database');
    return this.ds.transaction(fn);
  }

  /** Writes an event in the caller's transaction; it reaches JetStream once that commits. */
  enqueue<T>(
    manager: EntityManager,
    subject: string,
    fields: Omit<EnvelopeFields<T>, 'natssubject'>,
  ): Promise<Envelope<T>> {
    if (!this.outbox) throw new Error('this service has no database: publish events with MessageBus.publish');
    return this.outbox.enqueue(manager, subject, fields);
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.relay?.stop();
  }
}
