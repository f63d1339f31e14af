export { freePort } from './ports.js';
export { PollAbortError, pollUntil, PollTimeoutError, type PollOptions } from './poll.js';
export {
  ensureNatsServer,
  startNatsServer,
  NatsServerMissingError,
  type NatsServerOptions,
  type RunningNats,
} from './nats-server.js';
export {
  POSTGRES_LOG,
  startPostgres,
  PostgresStartError,
  type PostgresOptions,
  type RunningPostgres,
} from './postgres.js';
export { startTestStack, type TestStack } from './stack.js';
export { RawNatsClient, RawNatsError, type RawMessage, type RawOutcome } from './raw-nats.js';
export { ccmFailure } from './ccm-failure.js';
export { startBuiltService, type ServiceProcess } from './built-service.js';
