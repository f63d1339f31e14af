import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { SERVICE_CONFIG } from '@ccm/runtime';
import pg from 'pg';
import { type EntityManager } from 'typeorm';
import { type CoordinatorConfig } from '../config.js';

/** The Postgres channel replicas use to wake each other. */
export const WAKEUP_CHANNEL = 'ccm_saga_coordinator';

/** What a wake-up asks for. */
export type Wakeup =
  /** A migration was queued or released a slot: run an admission pass. */
  | { kind: 'admit' }
  /** Saga `id` was changed by a replica that does not hold it: its holder should send what is due. */
  | { kind: 'kick'; id: string }
  /** A replica handed its leases back (shutdown): take them over now rather than at expiry. */
  | { kind: 'released' };

function encode(w: Wakeup): string {
  return w.kind === 'kick' ? `kick:${w.id}` : w.kind;
}

function decode(payload: string): Wakeup | undefined {
  if (payload === 'admit' || payload === 'released') return { kind: payload };
  if (payload.startsWith('kick:')) return { kind: 'kick', id: payload.slice(5) };
  return undefined;
}

/** Queues a wake-up in the caller's transaction: it is delivered to every replica when that commits. */
export async function notify(manager: EntityManager, w: Wakeup): Promise<void> {
  await manager.query('SELECT pg_notify($1, $2)', [WAKEUP_CHANNEL, encode(w)]);
}

/**
 * Listens for wake-ups on a dedicated Postgres connection (LISTEN needs one) and reconnects when it
 * drops. Wake-ups only make replicas react sooner: periodic scans do the same work if one is lost.
 */
@Injectable()
export class Wakeups implements OnApplicationShutdown {
  private readonly log = new Logger('Wakeups');
  private client?: pg.Client;
  private closed = false;
  private readonly retired = new WeakSet<pg.Client>();
  private readonly handlers: Array<(w: Wakeup) => void> = [];

  constructor(@Inject(SERVICE_CONFIG) private readonly config: CoordinatorConfig) {}

  on(handler: (w: Wakeup) => void): void {
    this.handlers.push(handler);
  }

  async start(): Promise<void> {
    this.closed = false;
    await this.connect();
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({
      connectionString: this.config.CCM_DATABASE_URL,
      application_name: `saga-coordinator/${this.config.CCM_INSTANCE_ID}/listen`,
    });
    client.on('notification', (n) => {
      const w = n.payload ? decode(n.payload) : undefined;
      if (w) for (const h of this.handlers) h(w);
    });
    client.on('error', (err) => {
      this.log.warn(`wake-up connection failed, reconnecting: ${err.message}`);
      this.retry(client);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${WAKEUP_CHANNEL}`);
      this.client = client;
    } catch (err) {
      this.log.warn(`cannot listen for wake-ups yet: ${(err as Error).message}`);
      this.retry(client);
    }
  }

  private retry(client: pg.Client): void {
    if (this.retired.has(client)) return;
    this.retired.add(client);
    if (this.client === client) this.client = undefined;
    void client.end().catch(() => undefined);
    if (!this.closed) setTimeout(() => void this.connect(), this.config.CCM_SAGA_TICK_MS).unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.closed = true;
    await this.client?.end().catch(() => undefined);
  }
}
