import { hostname } from 'node:os';
import { z } from 'zod';
import { envInt, natsServers, postgresUrl } from './config.js';

/** Default time a service gets to finish in-flight work after SIGTERM before it exits anyway. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/** Default time a NATS request waits for its reply. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
/**
 * Default of CCM_ENVELOPE_MAX_SKEW_MS: how far an envelope's `time` may be from the receiver's clock
 * (a stream message: from when the server stored it).
 */
export const DEFAULT_ENVELOPE_MAX_SKEW_MS = 120_000;
/** Default outbox relay poll period when no local wake-up arrives. */
export const DEFAULT_OUTBOX_POLL_MS = 200;

/**
 * Settings every CCM service reads from its environment. Keys live on disk (`CCM_KEYS_DIR`): the
 * service's NATS NKEY seed, its Ed25519 envelope signing key and the trust store of all signers.
 */
export const serviceConfigSchema = z.object({
  CCM_INSTANCE_ID: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, ".", "-" and "_" only')
    .default(`${hostname()}-${process.pid}`),
  CCM_NATS_URL: natsServers.default(['nats://127.0.0.1:4222']),
  CCM_KEYS_DIR: z.string().min(1, 'must name the directory made by `ccm-keys`'),
  CCM_DATABASE_URL: postgresUrl.optional(),
  CCM_HTTP_HOST: z.string().default('127.0.0.1'),
  /** 0 picks a free port (tests); the stack launcher and compose set fixed ones. */
  CCM_HTTP_PORT: envInt(0, 65535).default(8080),
  CCM_LOG_LEVEL: z.enum(['error', 'warn', 'log', 'debug', 'verbose']).default('log'),
  CCM_SHUTDOWN_GRACE_MS: envInt(100, 600_000).default(DEFAULT_SHUTDOWN_GRACE_MS),
  CCM_REQUEST_TIMEOUT_MS: envInt(10, 600_000).default(DEFAULT_REQUEST_TIMEOUT_MS),
  CCM_OUTBOX_POLL_MS: envInt(10, 60_000).default(DEFAULT_OUTBOX_POLL_MS),
  /** Deliveries of one JetStream message before it is parked in the dead-letter subject. */
  CCM_MAX_DELIVER: envInt(1, 1000).default(5),
  /**
   * How far a received envelope's time may be from the receiver's clock; below JetStream's 10-minute
   * duplicate window so a replay the server no longer drops is refused as stale.
   */
  CCM_ENVELOPE_MAX_SKEW_MS: envInt(1000, 540_000).default(DEFAULT_ENVELOPE_MAX_SKEW_MS),
});

export type ServiceConfig = z.infer<typeof serviceConfigSchema>;
