import {
  CancelRequestSchema,
  CcmError,
  ErrorCodes,
  GET_MIGRATION_VERB,
  GetMigrationRequestSchema,
  LIST_MIGRATIONS_VERB,
  ListMigrationsRequestSchema,
  MigrateRequestSchema,
  STREAMS,
  migrationEventSubject,
  migrationEventType,
  migrationIdFor,
  subjects,
  type Envelope,
  type ListMigrationsRequest,
  type MigrateRequest,
  type MigrationDetail,
  type MigrationEventName,
  type DurableConsumerContract,
  type MigrationPhase,
  type Reply,
} from '@ccm/contracts';
import { type Identity, type TrustStore } from '@ccm/keys';
import { encodeEnvelope, openEnvelope, sealEnvelope } from '@ccm/messaging';
import {
  AckPolicy,
  jetstream,
  jetstreamManager,
  type ConsumerMessages,
  type JetStreamClient,
} from '@nats-io/jetstream';
import { type Msg, type NatsConnection } from '@nats-io/transport-node';
import { type z } from 'zod';

/** What the fake does with a migrate request, chosen by the workload's name. */
type Ending = Extract<MigrationPhase, 'Succeeded' | 'RolledBack' | 'Rejected' | 'Running'> | 'Silent';
const endingOf = (workload: string): Ending =>
  workload.startsWith('doomed')
    ? 'RolledBack'
    : workload.startsWith('busy')
      ? 'Rejected'
      : workload.startsWith('silent')
        ? 'Silent'
        : workload.startsWith('running')
          ? 'Running'
          : 'Succeeded';

/** The fake's intake consumer; a test stack grants it to the saga-coordinator identity. */
export const FAKE_COORDINATOR_CONSUMER = {
  stream: 'requests',
  durable: 'fake-coordinator',
  filterSubject: 'ccm.req.>',
} as const satisfies DurableConsumerContract;

/**
 * A scripted stand-in for the saga-coordinator, for CLI tests: it consumes the intake stream as the
 * saga-coordinator identity, checks each request's signature and schema, answers with a fixed event
 * story signed as the coordinator, and answers the two queries from what it has seen.
 */
export class FakeCoordinator {
  readonly requests: Array<{ envelope: Envelope<MigrateRequest>; id: string }> = [];
  readonly cancels: string[] = [];
  readonly queries: ListMigrationsRequest[] = [];
  readonly details = new Map<string, MigrationDetail>();
  private readonly js: JetStreamClient;
  private messages?: ConsumerMessages;
  private loop?: Promise<void>;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly identity: Identity,
    private readonly trust: TrustStore,
  ) {
    this.js = jetstream(nc);
  }

  static async start(nc: NatsConnection, identity: Identity, trust: TrustStore): Promise<FakeCoordinator> {
    const f = new FakeCoordinator(nc, identity, trust);
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(STREAMS.requests.name, {
      durable_name: FAKE_COORDINATOR_CONSUMER.durable,
      filter_subject: FAKE_COORDINATOR_CONSUMER.filterSubject,
      ack_policy: AckPolicy.Explicit,
    });
    const messages = await (
      await f.js.consumers.get(STREAMS.requests.name, FAKE_COORDINATOR_CONSUMER.durable)
    ).consume();
    f.messages = messages;
    f.loop = (async () => {
      for await (const m of messages) {
        await f.intake(m.subject, m.data).catch(() => undefined);
        m.ack();
      }
    })().catch(() => undefined);
    f.respond(GET_MIGRATION_VERB, GetMigrationRequestSchema, (q) => {
      const d = f.details.get(q.migrationId);
      if (!d) throw new CcmError(ErrorCodes.NotFound, `no migration ${q.migrationId}`, { retryable: false });
      return d;
    });
    f.respond(LIST_MIGRATIONS_VERB, ListMigrationsRequestSchema, (q) => {
      f.queries.push(q);
      const items = [...f.details.values()].filter((d) => !q.phase || d.phase === q.phase);
      return {
        items: items.map(({ phaseHistory: _h, steps: _s, idempotencyKey: _k, eventSeq: _e, ...s }) => s),
      };
    });
    return f;
  }

  /** Stops consuming and closes its connection. */
  async stop(): Promise<void> {
    this.messages?.stop();
    await this.loop;
    await this.nc.close();
  }

  private async intake(subject: string, bytes: Uint8Array): Promise<void> {
    if (subject === subjects.req('cancel')) {
      const env = openEnvelope(bytes, this.trust, CancelRequestSchema, { subject });
      this.cancels.push(env.data.migrationId);
      const seq = (this.details.get(env.data.migrationId)?.eventSeq ?? 0) + 1;
      await this.emit(env.data.migrationId, 'cancel-refused', seq, {
        reason: 'PastPointOfNoReturn',
        message: `migration ${env.data.migrationId} is past the point of no return (step "verify" was sent); it can only complete`,
      });
      return;
    }
    const env = openEnvelope(bytes, this.trust, MigrateRequestSchema, { subject });
    const id = migrationIdFor(env.idempotencykey ?? env.id);
    this.requests.push({ envelope: env, id });
    if (this.details.has(id)) return; // the same key again: the migration it named goes on
    const r = env.data;
    const ending = endingOf(r.workload);
    const story: Array<[MigrationEventName, Record<string, unknown>]> = [
      [
        'requested',
        {
          workload: r.workload,
          kind: r.kind,
          sourceHost: r.sourceHost,
          targetHost: r.targetHost,
          priority: r.priority,
          requestedBy: env.source,
        },
      ],
    ];
    if (ending === 'Rejected') {
      story.push([
        'rejected',
        { code: 'CONFLICT', message: `container ${r.workload} already has an active migration mig-other` },
      ]);
    } else if (ending !== 'Silent') {
      const step = { participant: 'saga-coordinator', command: 'admit', attempt: 1 };
      story.push(
        ['admitted', { waitedMs: 3 }],
        ['phase-changed', { from: 'Pending', to: 'Running' }],
        ['step-started', { step: 'admit', timeoutMs: 10_000, ...step }],
        ['step-succeeded', { step: 'admit', durationMs: 4, ...step }],
        [
          'progressed',
          {
            reporter: 'container-checkpoint',
            progress: {
              step: 'pre-copy',
              stage: 'pre-dump round 2',
              bytesTransferred: 512 << 20,
              bytesTotal: 1024 << 20,
              at: new Date().toISOString(),
            },
          },
        ],
      );
      if (ending === 'RolledBack') {
        story.push(['phase-changed', { from: 'Running', to: 'Compensating', reason: 'pre-copy failed' }]);
      }
      // A running migration stops here, before its end, until `finish`.
      if (ending !== 'Running')
        story.push([
          'finished',
          {
            phase: ending,
            reason: ending === 'Succeeded' ? 'all 12 steps succeeded' : 'rolled back: pre-copy failed',
            durationMs: 1500,
            ...(ending === 'Succeeded'
              ? { figures: { blackoutMs: 180, brownoutMs: 47, cutOverMs: 31, peersUpdated: 16 } }
              : {}),
          },
        ]);
    }
    for (const [i, [name, data]] of story.entries()) await this.emit(id, name, i + 1, data);
    const final = story.at(-1)![0];
    this.details.set(id, {
      id,
      saga: 'container-migration@1',
      kind: r.kind,
      workload: r.workload,
      sourceHost: r.sourceHost,
      targetHost: r.targetHost,
      priority: r.priority,
      phase: ending === 'Silent' ? 'Pending' : ending,
      requestedBy: env.source,
      createdAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
      ...(final === 'finished' || final === 'rejected'
        ? { endedAt: new Date().toISOString(), reason: 'scripted' }
        : {}),
      idempotencyKey: env.idempotencykey ?? env.id,
      phaseHistory: [{ phase: 'Pending', at: new Date().toISOString() }],
      steps: [],
      eventSeq: story.length,
    });
  }

  /** Ends a migration left running: one more step, then Succeeded. */
  async finish(id: string): Promise<void> {
    const d = this.details.get(id);
    if (!d || d.phase !== 'Running') throw new Error(`${id} is not a running migration of this fake`);
    const step = { participant: 'key-broker', command: 'attest-target', attempt: 1 };
    await this.emit(id, 'step-started', d.eventSeq + 1, {
      step: 'attest-target',
      timeoutMs: 10_000,
      ...step,
    });
    await this.emit(id, 'step-succeeded', d.eventSeq + 2, { step: 'attest-target', durationMs: 7, ...step });
    await this.emit(id, 'finished', d.eventSeq + 3, {
      phase: 'Succeeded',
      reason: 'all 12 steps succeeded',
      durationMs: 2500,
    });
    this.details.set(id, { ...d, phase: 'Succeeded', eventSeq: d.eventSeq + 3, reason: 'scripted' });
  }

  private async emit(
    id: string,
    name: MigrationEventName,
    seq: number,
    data: Record<string, unknown>,
  ): Promise<void> {
    const env = sealEnvelope(this.identity, {
      natssubject: migrationEventSubject(id, name),
      type: migrationEventType(name),
      correlationid: id,
      data: { migrationId: id, seq, at: new Date().toISOString(), ...data },
    });
    await this.js.publish(migrationEventSubject(id, name), encodeEnvelope(env), { msgID: env.id });
  }

  private respond<S extends z.ZodType>(verb: string, schema: S, answer: (q: z.infer<S>) => unknown): void {
    const sub = this.nc.subscribe(subjects.cmd('saga-coordinator', verb));
    void (async () => {
      for await (const m of sub) this.reply(m, schema, answer);
    })();
  }

  private reply<S extends z.ZodType>(m: Msg, schema: S, answer: (q: z.infer<S>) => unknown): void {
    let reply: Reply;
    let causationid: string | undefined;
    try {
      const env = openEnvelope(m.data, this.trust, schema, { subject: m.subject });
      causationid = env.id;
      reply = { ok: true, result: answer(env.data) };
    } catch (err) {
      const e = err instanceof CcmError ? err : new CcmError(ErrorCodes.Internal, String(err));
      reply = { ok: false, error: e.toPayload() };
    }
    const type = `${m.subject}.reply`;
    m.respond(
      encodeEnvelope(
        sealEnvelope(this.identity, { natssubject: m.reply ?? '', type, causationid, data: reply }),
      ),
    );
  }
}
