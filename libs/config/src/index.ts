export { ConfigError, loadConfig, envInt, envBool, natsServers, postgresUrl } from './config.js';
export {
  serviceConfigSchema,
  type ServiceConfig,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_OUTBOX_POLL_MS,
  DEFAULT_ENVELOPE_MAX_SKEW_MS,
} from './service-config.js';
export { eventsRetentionFromEnv, eventsRetentionSchema } from './events-retention.js';
