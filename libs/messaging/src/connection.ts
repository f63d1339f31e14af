import { CcmError, ErrorCodes, inboxPrefix, STREAMS } from '@ccm/contracts';
import {
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { type Identity } from '@ccm/keys';

/** How long a publish with the same Nats-Msg-Id is deduplicated (outbox re-sends after a crash). */
export const DUPLICATE_WINDOW_MS = 10 * 60_000;
const NS_PER_MS = 1_000_000;

/** Connects as the identity's NKEY user with its private inbox prefix; reconnects forever. */
export async function connectNats(
  servers: string[],
  identity: Identity,
  clientName: string,
): Promise<NatsConnection> {
  try {
    return await connect({
      servers,
      name: clientName,
      authenticator: nkeyAuthenticator(identity.natsSeed),
      inboxPrefix: inboxPrefix(identity.name),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
  } catch (cause) {
    throw new CcmError(
      ErrorCodes.Unavailable,
      `cannot connect to NATS at ${servers.join(',')}: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
}

const STREAM_CONFIGS: Array<Partial<StreamConfig> & { name: string; subjects: string[] }> = [
  {
    name: STREAMS.events.name,
    subjects: [...STREAMS.events.subjects],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    duplicate_window: DUPLICATE_WINDOW_MS * NS_PER_MS,
  },
  {
    name: STREAMS.requests.name,
    subjects: [...STREAMS.requests.subjects],
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    duplicate_window: DUPLICATE_WINDOW_MS * NS_PER_MS,
  },
  {
    name: STREAMS.deadLetters.name,
    subjects: [...STREAMS.deadLetters.subjects],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    duplicate_window: DUPLICATE_WINDOW_MS * NS_PER_MS,
  },
];

/** Creates CCM's streams when missing; safe to call from every replica at once. */
export async function ensureStreams(jsm: JetStreamManager): Promise<void> {
  for (const cfg of STREAM_CONFIGS) {
    try {
      await jsm.streams.info(cfg.name);
      continue;
    } catch {
      // missing: create below
    }
    try {
      await jsm.streams.add(cfg);
    } catch (err) {
      // Another replica may have created it in between.
      await jsm.streams.info(cfg.name).catch(() => {
        throw err;
      });
    }
  }
}

export { jetstreamManager };
