import { Inject, Injectable } from '@nestjs/common';
import { Counter, Histogram, type Registry } from 'prom-client';
import { METRICS_REGISTRY } from './options.js';

/** Messaging counters and latencies, exported on the service's /metrics. */
@Injectable()
export class MessagingMetrics {
  readonly handled: Counter<'subject' | 'outcome'>;
  readonly duration: Histogram<'subject'>;
  readonly outboxRelayed: Counter;
  readonly deadLettered: Counter<'consumer'>;

  constructor(@Inject(METRICS_REGISTRY) registry: Registry) {
    this.handled = new Counter({
      name: 'ccm_messages_handled_total',
      help: 'Messages handled, by subject pattern and outcome',
      labelNames: ['subject', 'outcome'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'ccm_message_handler_seconds',
      help: 'Handler time per message',
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
  }
}
