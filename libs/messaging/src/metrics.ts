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
