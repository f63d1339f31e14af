import { Module, type DynamicModule } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { MessageBus } from './bus.js';
import { MessagingMetrics } from './metrics.js';
import { NatsService } from './nats.service.js';
import { OutboxService } from './outbox.service.js';
import { HandlerRegistry } from './registry.js';

/**
 * CCM's NATS + JetStream integration for Nest. Expects MESSAGING_OPTIONS and METRICS_REGISTRY (and
 * DATA_SOURCE for services with a database) from a global module, as the runtime's bootstrap provides.
 */
@Module({})
export class MessagingModule {
  static forRoot(): DynamicModule {
    return {
      module: MessagingModule,
      global: true,
      imports: [DiscoveryModule],
      providers: [NatsService, MessagingMetrics, MessageBus, OutboxService, HandlerRegistry],
      exports: [NatsService, MessageBus, OutboxService, HandlerRegistry],
    };
  }
}
