import { Inject, Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { type ConsumerHealth } from './consumer.js';
import { METRICS_REGISTRY } from './options.js';

/** Messaging counters and latencies, exported on the service's /metrics. */
@Injectable()
export class MessagingMetrics {
  readonly handled: Counter<'subject' | 'outcome'>;
  readonly duration: Histogram<'subject'>;
  readonly outboxRelayed: Counter;
  readonly deadLettered: Counter<'consumer'>;
  /** Handlers running in this process now (`ccm_handlers_in_flight`). */
  readonly inFlight: HandlersInFlight;
  /** Set by the handler registry: reads every consumer's state when /metrics is scraped. */
  consumerHealth?: () => Promise<ConsumerHealth[]>;

  constructor(@Inject(METRICS_REGISTRY) registry: Registry) {
    this.handled = new Counter({
      name: 'ccm_messages_handled_total',
      help: 'Messages handled, by subject pattern and outcome',
      labelNames: ['subject', 'outcome'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'ccm_message_handler_seconds',
      help: 'Handler time per message (a repeat joined to the run in hand is not timed again)',
      labelNames: ['subject'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [registry],
    });
    this.outboxRelayed = new Counter({
      name: 'ccm_outbox_relayed_total',
      help: 'Outbox events published to JetStream',
      registers: [registry],
    });
    this.deadLettered = new Counter({
      name: 'ccm_dead_lettered_total',
      help: 'Messages parked on the dead-letter subject',
      labelNames: ['consumer'],
      registers: [registry],
    });
    this.inFlight = new HandlersInFlight(
      new Gauge({
        name: 'ccm_handlers_in_flight',
        help: 'Messages whose handler runs in this process now, by subject and migration (envelope correlationid, empty when none)',
        labelNames: ['subject', 'migration'],
        registers: [registry],
      }),
    );
    // A scrape collects the four gauges at once: they share one read of every consumer.
    let read: Promise<ConsumerHealth[]> | undefined;
    const shared = () => {
      read ??= (this.consumerHealth?.() ?? Promise.resolve([])).finally(() =>
        setTimeout(() => (read = undefined), 100).unref(),
      );
      return read;
    };
    const consumerGauge = (name: string, help: string, value: (h: ConsumerHealth) => number | undefined) => {
      const g: Gauge<'consumer'> = new Gauge({
        name,
        help,
        labelNames: ['consumer'],
        registers: [registry],
        collect: async () => {
          g.reset();
          for (const h of await shared()) {
            const v = value(h);
            if (v !== undefined) g.set({ consumer: h.durable }, v);
          }
        },
      });
    };
    consumerGauge(
      'ccm_consumer_ack_pending',
      'Unacknowledged messages of a durable consumer',
      (h) => h.ackPending,
    );
    consumerGauge(
      'ccm_consumer_pending',
      'Messages waiting in the stream for a durable consumer',
      (h) => h.pending,
    );
    consumerGauge('ccm_consumer_stalled', '1 while a consumer is at max-ack-pending (gets nothing)', (h) =>
      h.stalled ? 1 : 0,
    );
    consumerGauge('ccm_consumer_lost', '1 while a lost consumer cannot be re-created', (h) =>
      h.lost ? 1 : 0,
    );
  }
}

/** What a handler in flight is counted under. */
export interface InFlightLabels {
  /** The subject of the message being handled. */
  subject: string;
  /** The envelope's correlationid (a migration id), if any. */
  migration?: string;
}

/**
 * Counts the handlers running now by subject and migration, on a gauge: which commands this process
 * holds (a test kills the replica that holds a step's command). Bounded by what runs at once: a label
 * set is removed from the gauge when its count falls to zero.
 */
export class HandlersInFlight {
  private readonly counts = new Map<string, number>();

  constructor(private readonly gauge: Gauge<'subject' | 'migration'>) {}

  /** Runs `handler`, counted under `labels` until it settles. */
  async track<T>(labels: InFlightLabels, handler: () => Promise<T>): Promise<T> {
    const l = { subject: labels.subject, migration: labels.migration ?? '' };
    const key = `${l.subject} ${l.migration}`;
    this.add(key, l, 1);
    try {
      return await handler();
    } finally {
      this.add(key, l, -1);
    }
  }

  private add(key: string, l: Required<InFlightLabels>, by: 1 | -1): void {
    const n = (this.counts.get(key) ?? 0) + by;
    if (n > 0) {
      this.counts.set(key, n);
      this.gauge.set(l, n);
    } else {
      this.counts.delete(key);
      this.gauge.remove(l);
    }
  }
}
