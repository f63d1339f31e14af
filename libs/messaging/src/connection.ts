import {
  CcmError,
  DEFAULT_EVENTS_RETENTION,
  ErrorCodes,
  inboxPrefix,
  STREAMS,
  type EventsRetention,
} from '@ccm/contracts';
import {
  DiscardPolicy,
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

/** A NATS stream limit from a CCM one: 0 (none) is -1 to NATS. */
const natsLimit = (n: number) => (n > 0 ? n : -1);

/**
 * CCM's streams as the bootstrap creates them. The audit log (CCM_EVENTS) denies deleting and purging
 * messages through the API, so not even an identity allowed to update the stream can erase an event;
 * only its configured retention (`retention`, see {@link EventsRetention}) drops the oldest.
 */
export function streamConfigs(
  retention: EventsRetention = DEFAULT_EVENTS_RETENTION,
): Array<Partial<StreamConfig> & { name: string; subjects: string[] }> {
  return [
    {
      name: STREAMS.events.name,
      subjects: [...STREAMS.events.subjects],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      duplicate_window: DUPLICATE_WINDOW_MS * NS_PER_MS,
      deny_delete: true,
      deny_purge: true,
      max_age: retention.maxAgeMs * NS_PER_MS, // 0: no limit to NATS too
      max_bytes: natsLimit(retention.maxBytes),
      max_msgs: natsLimit(retention.maxMsgs),
      discard: retention.discard === 'new' ? DiscardPolicy.New : DiscardPolicy.Old,
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
}

/** {@link streamConfigs} with the default retention. */
export const STREAM_CONFIGS = streamConfigs();

/**
 * Creates CCM's streams, or brings existing ones to {@link streamConfigs}; run by the bootstrap
 * identity (the stack launcher, the compose `streams` job, test stacks), never by a service. Safe to
 * run from several places at once.
 */
export async function ensureStreams(
  jsm: JetStreamManager,
  retention: EventsRetention = DEFAULT_EVENTS_RETENTION,
): Promise<void> {
  for (const cfg of streamConfigs(retention)) {
    const existing = await jsm.streams.info(cfg.name).catch(() => undefined);
    if (existing) {
      await jsm.streams.update(cfg.name, { ...existing.config, ...cfg });
      continue;
    }
    try {
      await jsm.streams.add(cfg);
    } catch (err) {
      // Another bootstrap may have created it in between.
      await jsm.streams.info(cfg.name).catch(() => {
        throw err;
      });
    }
  }
}

/** Thrown at start when a stream the bootstrap makes is missing: services do not create streams. */
export class StreamMissingError extends CcmError {
  constructor(stream: string, cause: unknown) {
    super(
      ErrorCodes.Unavailable,
      `JetStream stream ${stream} does not exist or cannot be read (${(cause as Error).message}); ` +
        'streams are created by the bootstrap identity: start the stack launcher, run the compose ' +
        '`streams` job, or `node dist/tools/streams/main.js` first',
      { retryable: true, cause },
    );
  }
}

/** Checks that CCM's streams exist; a service calls it at start instead of creating them. */
export async function checkStreams(jsm: JetStreamManager): Promise<void> {
  for (const cfg of STREAM_CONFIGS) {
    await jsm.streams.info(cfg.name).catch((err: unknown) => {
      throw new StreamMissingError(cfg.name, err);
    });
  }
}

export { jetstreamManager };
