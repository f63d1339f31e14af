import { randomUUID } from 'node:crypto';
import {
  GET_MIGRATION_VERB,
  LIST_MIGRATIONS_VERB,
  MIGRATION_EVENTS,
  MigrationDetailSchema,
  MigrationPageSchema,
  STREAMS,
  migrationEventName,
  migrationIdFor,
  subjects,
  type CancelRequest,
  type ListMigrationsRequest,
  type MigrateRequestInput,
  type MigrationDetail,
  type MigrationEventName,
  type MigrationPage,
  type SignerName,
} from '@ccm/contracts';
import { type Identity, type TrustStore } from '@ccm/keys';
import { encodeEnvelope, openEnvelope, sealEnvelope, signedRequest } from '@ccm/messaging';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { pollUntil } from './poll.js';
import { type NatsConnection } from '@nats-io/transport-node';

/** A migration event as an observer saw it. */
export interface SeenEvent {
  readonly name: MigrationEventName;
  readonly subject: string;
  readonly data: Record<string, unknown> & { migrationId: string; seq: number };
  readonly source: string;
  /** `performance.now()` when it arrived here. */
  readonly seenAt: number;
}

/**
 * The operator's side of the coordinator for tests and benchmarks: publishes signed migrate and
 * cancel requests to JetStream, queries over NATS, and records every migration event it sees.
 */
export class OperatorClient {
  readonly events: SeenEvent[] = [];
  /** Events that broke their contract (should stay empty). */
  readonly invalidEvents: Array<{ subject: string; error: string }> = [];
  private readonly seen = new Set<string>();
  private readonly latest = new Map<string, SeenEvent>();
  private readonly js: JetStreamClient;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly identity: Identity,
    private readonly trust: TrustStore,
  ) {
    this.js = jetstream(nc);
    const sub = nc.subscribe('ccm.evt.migration.>');
    void (async () => {
      for await (const m of sub) {
        const name = migrationEventName(m.subject);
        if (!name) continue;
        try {
          const env = openEnvelope(m.data, trust, MIGRATION_EVENTS[name], { subject: m.subject });
          const data = env.data as SeenEvent['data'];
          if (this.seen.has(`${data.migrationId}:${data.seq}`)) continue;
          this.seen.add(`${data.migrationId}:${data.seq}`);
          const seen = { name, subject: m.subject, data, source: env.source, seenAt: performance.now() };
          this.events.push(seen);
          this.latest.set(`${data.migrationId}:${name}`, seen);
        } catch (err) {
          this.invalidEvents.push({ subject: m.subject, error: (err as Error).message });
        }
      }
    })();
  }

  static async connect(stack: {
    connectAs(s: SignerName): Promise<NatsConnection>;
    identity(s: SignerName): Promise<Identity>;
    trust: TrustStore;
  }): Promise<OperatorClient> {
    const nc = await stack.connectAs('operator');
    const c = new OperatorClient(nc, await stack.identity('operator'), stack.trust);
    return c;
  }

  /** Publishes a migrate request; returns the migration id its key names. */
  async migrate(req: MigrateRequestInput, key: string = randomUUID(), as?: Identity): Promise<string> {
    const env = sealEnvelope(as ?? this.identity, {
      natssubject: subjects.req('migrate'),
      type: subjects.req('migrate'),
      data: req,
      idempotencykey: key,
    });
    await this.js.publish(subjects.req('migrate'), encodeEnvelope(env), { msgID: env.id });
    return migrationIdFor(key);
  }

  /**
   * Publishes raw bytes on an intake subject (malformed-request tests), with the envelope's id as
   * Nats-Msg-Id when the bytes carry one, as a real sender would.
   */
  async publishRaw(subject: string, bytes: Uint8Array): Promise<void> {
    let msgID: string | undefined;
    try {
      const id = (JSON.parse(new TextDecoder().decode(bytes)) as { id?: unknown }).id;
      if (typeof id === 'string') msgID = id;
    } catch {
      // not JSON: no id to send
    }
    await this.js.publish(subject, bytes, msgID ? { msgID } : {});
  }

  async cancel(req: CancelRequest): Promise<void> {
    const subject = subjects.req('cancel');
    const env = sealEnvelope(this.identity, { natssubject: subject, type: subject, data: req });
    await this.js.publish(subjects.req('cancel'), encodeEnvelope(env), { msgID: env.id });
  }

  get(migrationId: string): Promise<MigrationDetail> {
    return signedRequest(
      this.nc,
      this.identity,
      this.trust,
      subjects.cmd('saga-coordinator', GET_MIGRATION_VERB),
      { migrationId },
      MigrationDetailSchema,
      { timeoutMs: 5_000 },
    );
  }

  /** The migration, or undefined while the coordinator has not recorded it. */
  find(migrationId: string): Promise<MigrationDetail | undefined> {
    return this.get(migrationId).catch((err: unknown) => {
      if ((err as { code?: string }).code === 'NOT_FOUND') return undefined;
      throw err;
    });
  }

  list(q: ListMigrationsRequest = {}): Promise<MigrationPage> {
    return signedRequest(
      this.nc,
      this.identity,
      this.trust,
      subjects.cmd('saga-coordinator', LIST_MIGRATIONS_VERB),
      q,
      MigrationPageSchema,
      { timeoutMs: 5_000 },
    );
  }

  /** The last event named `name` seen for a migration (constant time, for benchmarks). */
  last(migrationId: string, name: MigrationEventName): SeenEvent | undefined {
    return this.latest.get(`${migrationId}:${name}`);
  }

  /** Events seen for one migration, in `seq` order. */
  eventsOf(migrationId: string, name?: MigrationEventName): SeenEvent[] {
    return this.events
      .filter((e) => e.data.migrationId === migrationId && (!name || e.name === name))
      .sort((a, b) => a.data.seq - b.data.seq);
  }

  /** Every message parked on a dead-letter subject so far, with the reason the consumer gave. */
  async deadLetters(): Promise<Array<{ subject: string; reason: string; original: string; data: string }>> {
    const jsm = await jetstreamManager(this.nc);
    const info = await jsm.streams.info(STREAMS.deadLetters.name);
    const out = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage(STREAMS.deadLetters.name, { seq }).catch(() => null);
      if (!m) continue;
      out.push({
        subject: m.subject,
        reason: m.header?.get('Ccm-Dlq-Reason') ?? '',
        original: m.header?.get('Ccm-Dlq-Subject') ?? '',
        data: new TextDecoder().decode(m.data),
      });
    }
    return out;
  }

  close(): Promise<void> {
    return this.nc.close();
  }
}

/**
 * Waits until migration `id` has ended and every event up to its last `seq` has been seen; returns
 * the final detail and the events in order.
 */
export async function settled(
  operator: OperatorClient,
  id: string,
  timeoutMs = 30_000,
): Promise<{ detail: MigrationDetail; events: SeenEvent[] }> {
  const detail = await pollUntil(
    `migration ${id} to end`,
    () => operator.find(id),
    (m) => m?.endedAt !== undefined,
    { timeoutMs },
  );
  const events = await pollUntil(
    `events of ${id} up to seq ${detail!.eventSeq}`,
    () => operator.eventsOf(id),
    (seen) => seen.length === detail!.eventSeq && seen.every((e, i) => e.data.seq === i + 1),
    { timeoutMs },
  );
  return { detail: detail!, events };
}

/** A fresh idempotency key and the migration id it names (to script participants before publishing). */
export function newMigration(): { key: string; id: string } {
  const key = randomUUID();
  return { key, id: migrationIdFor(key) };
}
