import { Logger } from '@nestjs/common';
import { chainIdFor, type Envelope } from '@ccm/contracts';
import { advanceDbChain, nextDbLink } from './chain.js';
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
    /** Names this publisher's chains (see chain.ts); the identity's name by default. */
    private readonly publisher: string = identity.name,
  ) {}

  /**
   * Seals the event and inserts it with `manager`: it is published only if that transaction commits.
   * An event about a migration (`correlationid`) is appended to the publisher's hash chain for it.
   */
  async enqueue<T>(
    manager: EntityManager,
    subject: string,
    fields: Omit<EnvelopeFields<T>, 'natssubject'>,
  ): Promise<Envelope<T>> {
    const chain = fields.correlationid
      ? await nextDbLink(
          manager,
          this.schema,
          chainIdFor(fields.correlationid, this.publisher),
          fields.chainGenesis,
        )
      : undefined;
    const env = sealEnvelope(this.identity, { ...fields, natssubject: subject, chain });
    await manager.query(
      `INSERT INTO "${this.schema}".outbox (id, subject, envelope, chain_id, chain_seq, publisher) VALUES ($1, $2, $3, $4, $5, $6)`,
      [env.id, subject, JSON.stringify(env), env.chainid ?? null, env.chainseq ?? null, this.publisher],
    );
    if (chain) await advanceDbChain(manager, this.schema, env);
    // Wake the relay once the surrounding transaction has had a chance to commit.
    setImmediate(this.onEnqueued);
    return env;
  }
}

interface OutboxRow {
  id: string;
  subject: string;
  envelope: Envelope;
  chain_id: string | null;
  chain_seq: number | null;
}

/**
 * The rows of a batch that may go out now, so every chain reaches the stream in its own order: for each
 * chain, only the run of consecutive rows starting at the chain's oldest unsent one. Rows another
 * replica holds (SKIP LOCKED) cut the run; what is left waits for a later pass.
 */
async function inChainOrder(manager: EntityManager, table: string, rows: OutboxRow[]): Promise<OutboxRow[]> {
  const chains = [...new Set(rows.flatMap((r) => (r.chain_id ? [r.chain_id] : [])))];
  if (!chains.length) return rows;
  const mins = await manager.query<Array<{ chain_id: string; seq: number }>>(
    `SELECT chain_id, min(chain_seq) AS seq FROM ${table} WHERE sent_at IS NULL AND chain_id = ANY($1) GROUP BY chain_id`,
    [chains],
  );
  const out = rows.filter((r) => !r.chain_id);
  for (const { chain_id, seq } of mins) {
    const mine = new Map(rows.filter((r) => r.chain_id === chain_id).map((r) => [r.chain_seq, r]));
    for (let next = seq, row = mine.get(next); row; row = mine.get(++next)) out.push(row);
  }
  return out;
}

export interface RelayOptions {
  batchSize?: number;
  pollMs: number;
  /**
   * Relay only the rows this publisher wrote (and rows from before publishers were recorded): several
   * scoped instances (host-agents of different hosts) may share a schema, and each may publish only
   * its own subjects. Unset: every row of the schema.
   */
  publisher?: string;
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
      const mine = this.opts.publisher === undefined ? '' : 'AND (publisher IS NULL OR publisher = $2)';
      const taken = await manager.query<OutboxRow[]>(
        `SELECT id, subject, envelope, chain_id, chain_seq FROM ${t} WHERE sent_at IS NULL ${mine} ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED`,
        [this.opts.batchSize ?? 100, ...(this.opts.publisher === undefined ? [] : [this.opts.publisher])],
      );
      const rows = await inChainOrder(manager, t, taken);
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
