import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { type NatsConnection } from '@nats-io/transport-node';
import { checkStreams, connectNats } from './connection.js';
import { MESSAGING_OPTIONS, type MessagingOptions } from './options.js';

/**
 * The service's one NATS connection. Connects and checks that CCM's streams exist at start (the
 * bootstrap identity creates them); drains last at
 * shutdown, after handlers and the outbox relay have stopped taking work.
 */
@Injectable()
export class NatsService implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('Nats');
  private connection?: NatsConnection;
  private jsClient?: JetStreamClient;
  private jsManager?: JetStreamManager;

  constructor(@Inject(MESSAGING_OPTIONS) private readonly opts: MessagingOptions) {}

  async onModuleInit(): Promise<void> {
    this.connection = await connectNats(
      this.opts.servers,
      this.opts.identity,
      `${this.opts.service}/${this.opts.instanceId}`,
    );
    this.jsManager = await jetstreamManager(this.connection);
    this.jsClient = jetstream(this.connection);
    await checkStreams(this.jsManager);
    this.log.log(`connected to ${this.connection.getServer()} as ${this.opts.identity.natsPublicKey}`);
  }

  get nc(): NatsConnection {
    if (!this.connection) throw new Error('NATS is not connected yet');
    return this.connection;
  }
  get js(): JetStreamClient {
    if (!this.jsClient) throw new Error('NATS is not connected yet');
    return this.jsClient;
  }
  get jsm(): JetStreamManager {
    if (!this.jsManager) throw new Error('NATS is not connected yet');
    return this.jsManager;
  }

  /** True while connected (not closed, not reconnecting). */
  isHealthy(): boolean {
    return !!this.connection && !this.connection.isClosed() && !this.connection.isDraining();
  }

  async rttMs(): Promise<number> {
    return this.nc.rtt();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.connection && !this.connection.isClosed()) {
      await this.connection.drain().catch((err: unknown) => this.log.warn(`drain failed: ${String(err)}`));
      this.log.log('NATS drained');
    }
  }
}
