import 'reflect-metadata';
import { type Server } from 'node:http';
import {
  ConsoleLogger,
  Module,
  type DynamicModule,
  type INestApplication,
  type LogLevel,
  type ModuleMetadata,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import { ConfigError, loadConfig, serviceConfigSchema, type ServiceConfig } from '@ccm/config';
import { CcmError, schemaFor, type ServiceName } from '@ccm/contracts';
import { loadIdentity, loadTrustStore, type Identity } from '@ccm/keys';
import { MESSAGING_OPTIONS, MessagingModule, METRICS_REGISTRY, type MessagingOptions } from '@ccm/messaging';
import { DATA_SOURCE, openDataSource } from '@ccm/persistence';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { type DataSource, type MigrationInterface } from 'typeorm';
import { type z } from 'zod';
import { HealthController } from './health.controller.js';
import { MetricsController } from './metrics.controller.js';
import { PingHandler } from './ping.handler.js';

/** Injection token of the validated configuration (the common part plus the service's own). */
export const SERVICE_CONFIG = Symbol.for('ccm.runtime.config');

export interface ServiceDefinition<S extends z.ZodObject = typeof serviceConfigSchema> {
  service: ServiceName;
  /** Whether the service keeps state in its own Postgres schema (guest-agent does not). */
  database: boolean;
  /** The service's config schema; must extend {@link serviceConfigSchema}. */
  configSchema?: S;
  /** A host-agent's host id or a guest-agent's VM id, from its config. */
  scopeId?: (config: z.infer<S>) => string;
  /**
   * Where the service's identity comes from when not its keys dir (a guest-agent launched attested
   * takes it from its launch secret): undefined falls back to `CCM_KEYS_DIR`.
   */
  identity?: (config: z.infer<S>) => Identity | undefined;
  imports?: ModuleMetadata['imports'];
  providers?: ModuleMetadata['providers'];
  controllers?: ModuleMetadata['controllers'];
  migrations?: Array<new () => MigrationInterface>;
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  entities?: Function[];
}

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];

/**
 * Nest's JSON logger, with a record's fields at the top level: `log({ message: 'ready', httpPort })`
 * prints `{"level":"log",...,"message":"ready","httpPort":...}` rather than nesting the object under
 * `message`, so log shippers and `jq .message` see a string. The logger's own fields win a collision.
 */
export class FlatJsonLogger extends ConsoleLogger {
  protected override getJsonLogObject(
    message: unknown,
    options: Parameters<ConsoleLogger['getJsonLogObject']>[1],
  ): ReturnType<ConsoleLogger['getJsonLogObject']> {
    if (message && typeof message === 'object' && !Array.isArray(message) && !(message instanceof Error)) {
      const { message: text, ...fields } = message as Record<string, unknown>;
      if (typeof text === 'string') return { ...fields, ...super.getJsonLogObject(text, options) };
    }
    return super.getJsonLogObject(message, options);
  }
}

/** Structured JSON logs on stdout: one object per line with level, context, message and timestamp. */
export function jsonLogger(service: string, level: ServiceConfig['CCM_LOG_LEVEL']): ConsoleLogger {
  return new FlatJsonLogger(service, {
    json: true,
    colors: false,
    logLevels: LEVELS.slice(0, LEVELS.indexOf(level) + 1),
  });
}

/**
 * Builds a service's Nest application from its definition and environment: validates config in one
 * step (throws ConfigError listing every problem), loads keys, opens its schema and runs migrations,
 * and wires messaging, /health, /metrics and the ping handler. The caller listens and handles signals.
 */
export async function createServiceApp<S extends z.ZodObject>(
  def: ServiceDefinition<S>,
  env: Record<string, string | undefined> = process.env,
): Promise<{ app: INestApplication; config: z.infer<S> }> {
  const schema = (def.configSchema ?? serviceConfigSchema) as S;
  const config = loadConfig(def.service, schema, env) as z.infer<S> & ServiceConfig;
  if (def.database && !config.CCM_DATABASE_URL) {
    throw new ConfigError(def.service, ['CCM_DATABASE_URL: required by this service (it is not set)']);
  }
  const logger = jsonLogger(def.service, config.CCM_LOG_LEVEL);
  const [identity, trust] = await Promise.all([
    def.identity?.(config) ?? loadIdentity(config.CCM_KEYS_DIR, def.service, def.scopeId?.(config)),
    loadTrustStore(config.CCM_KEYS_DIR),
  ]);
  const registry = new Registry();
  registry.setDefaultLabels({ service: def.service, instance: config.CCM_INSTANCE_ID });
  collectDefaultMetrics({ register: registry });
  const dbSchema = def.database ? schemaFor(def.service) : undefined;
  let ds: DataSource | undefined;
  if (def.database) {
    ds = await openDataSource({
      url: config.CCM_DATABASE_URL!,
      schema: dbSchema!,
      migrations: def.migrations,
      entities: def.entities,
      applicationName: `${def.service}/${config.CCM_INSTANCE_ID}`,
    });
  }
  const messaging: MessagingOptions = {
    service: def.service,
    schema: dbSchema,
    instanceId: config.CCM_INSTANCE_ID,
    scopeId: def.scopeId?.(config),
    servers: config.CCM_NATS_URL,
    identity,
    trust,
    requestTimeoutMs: config.CCM_REQUEST_TIMEOUT_MS,
    maxDeliver: config.CCM_MAX_DELIVER,
    outboxPollMs: config.CCM_OUTBOX_POLL_MS,
    envelopeMaxSkewMs: config.CCM_ENVELOPE_MAX_SKEW_MS,
  };

  @Module({})
  class RuntimeModule {
    static forRoot(): DynamicModule {
      return {
        module: RuntimeModule,
        global: true,
        providers: [
          { provide: SERVICE_CONFIG, useValue: config },
          { provide: MESSAGING_OPTIONS, useValue: messaging },
          { provide: METRICS_REGISTRY, useValue: registry },
          ...(ds ? [{ provide: DATA_SOURCE, useValue: ds }] : []),
        ],
        exports: [SERVICE_CONFIG, MESSAGING_OPTIONS, METRICS_REGISTRY, ...(ds ? [DATA_SOURCE] : [])],
      };
    }
  }

  @Module({
    imports: [
      RuntimeModule.forRoot(),
      MessagingModule.forRoot(),
      TerminusModule.forRoot({ logger: false }),
      ...(def.imports ?? []),
    ],
    controllers: [HealthController, MetricsController, ...(def.controllers ?? [])],
    providers: [PingHandler, ...(def.providers ?? [])],
  })
  class ServiceRootModule {}

  try {
    const app = await NestFactory.create(ServiceRootModule, { logger, abortOnError: false });
    if (ds) {
      const pool = ds;
      // The pool closes last, after messaging has stopped taking work and the outbox has flushed.
      const close = app.close.bind(app);
      app.close = async () => {
        await close();
        if (pool.isInitialized) await pool.destroy();
      };
    }
    return { app, config };
  } catch (err) {
    if (ds?.isInitialized) await ds.destroy();
    throw err;
  }
}

/** Exit code for a configuration error (sysexits EX_CONFIG), so supervisors do not restart-loop blindly. */
export const EXIT_CONFIG = 78;

/**
 * The whole of a service's main.ts: create, listen, print one `ready` log line with the HTTP port, and
 * on SIGTERM/SIGINT drain (stop taking work, finish in-flight messages, flush the outbox, drain NATS,
 * close the pool) within CCM_SHUTDOWN_GRACE_MS, then exit 0.
 */
export async function runService<S extends z.ZodObject>(def: ServiceDefinition<S>): Promise<void> {
  let created: Awaited<ReturnType<typeof createServiceApp<S>>>;
  try {
    created = await createServiceApp(def);
  } catch (err) {
    const configError = err instanceof ConfigError;
    process.stderr.write(
      `${JSON.stringify({ level: 'fatal', context: def.service, message: (err as Error).message, code: err instanceof CcmError ? err.code : undefined, problems: configError ? err.problems : undefined })}\n`,
    );
    process.exit(configError ? EXIT_CONFIG : 1);
  }
  const { app, config } = created;
  const cfg = config as ServiceConfig;
  await app.listen(cfg.CCM_HTTP_PORT, cfg.CCM_HTTP_HOST);
  const server = app.getHttpServer() as Server;
  const address = server.address() as { port: number } | null;
  // Lifecycle lines (ready, draining, stopped) are always written: supervisors and the stack wait on them.
  const logger = jsonLogger(
    def.service,
    cfg.CCM_LOG_LEVEL === 'error' || cfg.CCM_LOG_LEVEL === 'warn' ? 'log' : cfg.CCM_LOG_LEVEL,
  );
  logger.log({ message: 'ready', httpPort: address?.port, instanceId: cfg.CCM_INSTANCE_ID });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.log({ message: 'draining', signal });
    setTimeout(() => {
      logger.error({
        message: 'shutdown grace period exceeded, exiting',
        graceMs: cfg.CCM_SHUTDOWN_GRACE_MS,
      });
      process.exit(1);
    }, cfg.CCM_SHUTDOWN_GRACE_MS).unref();
    app.close().then(
      () => {
        logger.log({ message: 'stopped' });
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ message: 'shutdown failed', error: String(err) });
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}
