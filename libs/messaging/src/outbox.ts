import { Logger } from '@nestjs/common';
import { type Envelope } from '@ccm/contracts';
import { type JetStreamClient } from '@nats-io/jetstream';
import { type DataSource, type EntityManager } from 'typeorm';
import { encodeEnvelope, sealEnvelope, type EnvelopeFields } from './envelope-codec.js';
import { type Identity } from '@ccm/keys';

/** Writes signed events into the outbox table inside the caller's transaction. */
export class Outbox {
  constructor(
    private readonly identity: Identity,
    private readonly schema: string,
    private readonly onEnqueued: () => void = () => undefined,
  ) {}

  /** Seals the event and inserts it with `manager`: it is published only if that transaction commits. */
  async enqueue<T>(
    manager: EntityManager,
    subject: string,
    fields: Omit<EnvelopeFields<T>, 'natssubject'>,
  ): Promise<Envelope<T>> {
    const env = sealEnvelope(this.identity, { ...fields, natssubject: subject });
    await manager.query(`INSERT INTO "${this.schema}".outbox (id, subject, envelope) VALUES ($1, $2, $3)`, [
      env.id,
      subject,
      JSON.stringify(env),
    ]);
    // Wake the relay once the surrounding transaction has had a chance to commit.
    setImmediate(this.onEnqueued);
    return env;
  }
}

export interface RelayOptions {
  batchSize?: number;
  pollMs: number;
  /** Test hook: runs after a row is published and before it is marked sent (a crash point). */
  afterPublish?: (id: string) => void | Promise<void>;
  onRelayed?: (n: number) => void;
}

/**
 * Publishes unsent outbox rows to JetStream with the row id as Nats-Msg-Id, then marks them sent, in
 * one transaction holding the rows with FOR UPDATE SKIP LOCKED (replicas share the work). A crash
 * between publish and mark leaves the row unsent; the re-send is dropped by JetStream's duplicate
 * window, so each event is in the stream exactly once.
 */
export class OutboxRelay {
  private readonly log = new Logger('OutboxRelay');
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = true;
  private again = false;

  constructor(
    private readonly ds: DataSource,
    private readonly js: JetStreamClient,
    private readonly schema: string,
    private readonly opts: RelayOptions,
  ) {}

  start(): void {
    this.stopped = false;
    this.kick();
  }

  /** Asks for a pass now (after an enqueue) instead of at the next poll. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.running = this.loop().finally(() => {
      this.running = undefined;
      if (this.stopped) return;
      if (this.again) {
        this.again = false;
        this.kick();
      } else {
        this.timer = setTimeout(() => this.kick(), this.opts.pollMs);
      }
    });
  }

  private async loop(): Promise<void> {
    try {
      while (!this.stopped && (await this.relayOnce()) > 0) {
        // keep going while there is a backlog
      }
    } catch (err) {
      this.log.warn(`outbox relay pass failed: ${(err as Error).message}`);
    }
  }

  /** One batch: returns how many events were published. */
  async relayOnce(): Promise<number> {
    const t = `"${this.schema}".outbox`;
    return this.ds.transaction(async (manager) => {
      const rows = await manager.query<Array<{ id: string; subject: string; envelope: Envelope }>>(
        `SELECT id, subject, envelope FROM ${t} WHERE sent_at IS NULL ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED`,
        [this.opts.batchSize ?? 100],
      );
      for (const row of rows) {
        await this.js.publish(row.subject, encodeEnvelope(row.envelope), { msgID: row.id });
        await this.opts.afterPublish?.(row.id);
      }
      if (rows.length) {
        await manager.query(`UPDATE ${t} SET sent_at = now() WHERE id = ANY($1::uuid[])`, [
          rows.map((r) => r.id),
        ]);
        this.opts.onRelayed?.(rows.length);
      }
      return rows.length;
    });
  }

  /** Stops polling after a last full pass, so events committed before shutdown still go out. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    try {
      while ((await this.relayOnce()) > 0) {
        // flush the backlog
      }
    } catch (err) {
      this.log.warn(`final outbox pass failed, rows stay for the next start: ${(err as Error).message}`);
    }
  }
}
