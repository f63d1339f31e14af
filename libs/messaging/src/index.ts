export { MessagingModule } from './messaging.module.js';
export { NatsService } from './nats.service.js';
export { MessageBus, requestFailure, signedRequest, type RequestOptions } from './bus.js';
export { OutboxService } from './outbox.service.js';
export { Outbox, OutboxRelay, type RelayOptions } from './outbox.js';
export { Inbox } from './inbox.js';
export {
  DurableConsumer,
  retryDelayMs,
  BASE_RETRY_DELAY_MS,
  MAX_RETRY_DELAY_MS,
  type ConsumerHealth,
} from './consumer.js';
export {
  OnRequest,
  OnJetStream,
  ack,
  nak,
  term,
  type Outcome,
  type MessageContext,
  type RequestHandlerOptions,
  type ConsumerOptions,
} from './decorators.js';
export {
  sealEnvelope,
  openEnvelope,
  verifyEnvelope,
  checkAddress,
  encodeEnvelope,
  type EnvelopeFields,
  type EnvelopeExpectation,
} from './envelope-codec.js';
export {
  connectNats,
  ensureStreams,
  checkStreams,
  StreamMissingError,
  STREAM_CONFIGS,
  streamConfigs,
  DUPLICATE_WINDOW_MS,
} from './connection.js';
export { MESSAGING_OPTIONS, METRICS_REGISTRY, type MessagingOptions } from './options.js';
export { MessagingMetrics } from './metrics.js';
export { SeenEnvelopes, MAX_REMEMBERED_ENVELOPES } from './replay.js';
export { HandlerRegistry, type HandlerWiring } from './registry.js';
export { unlessPinnedTo } from './pinned.js';
export { publisherName, MemoryChains } from './chain.js';
export * from './audit/index.js';
