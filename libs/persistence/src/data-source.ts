import { createHash } from 'node:crypto';
import pg from 'pg';
import { DataSource, type MigrationInterface, type MixedList, type EntitySchema } from 'typeorm';
import {
  platformEventChainsMigration,
  platformOutboxPublisherMigration,
  platformTablesMigration,
} from './platform-migration.js';

/** Thrown when the database cannot be opened or its migrations fail; carries the schema. */
export class PersistenceError extends Error {
  override readonly name = 'PersistenceError';
  constructor(
    readonly schema: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`[${schema}] ${message}`, options);
  }
}

export interface DataSourceOptions {
  url: string;
  /** The service's own Postgres schema; created when missing. */
  schema: string;
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  entities?: MixedList<Function | string | EntitySchema>;
  /** The service's own migrations, run after the platform tables (outbox, inbox, ping). */
  migrations?: Array<new () => MigrationInterface>;
  poolSize?: number;
  applicationName?: string;
}

/** Default connections per service replica. */
export const DEFAULT_POOL_SIZE = 10;

function lockKey(schema: string): string {
  // A stable 63-bit advisory lock id per schema so replicas starting together migrate one at a time.
  return BigInt.asIntN(
    64,
    BigInt(`0x${createHash('sha256').update(`ccm-migrate:${schema}`).digest('hex').slice(0, 16)}`),
  ).toString();
}

/**
 * Opens a TypeORM DataSource bound to one schema and runs its checked-in migrations (never
 * `synchronize`). Migrations run under an advisory lock so concurrent replicas do not race.
 */
export async function openDataSource(opts: DataSourceOptions): Promise<DataSource> {
  if (!/^[a-z_][a-z0-9_]*$/.test(opts.schema))
    throw new PersistenceError(opts.schema, 'schema name must be lowercase identifier');
  const admin = new pg.Client({
    connectionString: opts.url,
    application_name: opts.applicationName ?? opts.schema,
  });
  try {
    await admin.connect();
  } catch (cause) {
    throw new PersistenceError(opts.schema, `cannot connect to Postgres: ${(cause as Error).message}`, {
      cause,
    });
  }
  const key = lockKey(opts.schema);
  try {
    await admin.query('SELECT pg_advisory_lock($1)', [key]);
    await admin.query(`CREATE SCHEMA IF NOT EXISTS "${opts.schema}"`);
    const ds = new DataSource({
      type: 'postgres',
      url: opts.url,
      schema: opts.schema,
      entities: opts.entities ?? [],
      migrations: [
        platformTablesMigration(opts.schema),
        platformEventChainsMigration(opts.schema),
        platformOutboxPublisherMigration(opts.schema),
        ...(opts.migrations ?? []),
      ],
      migrationsTableName: 'migrations',
      migrationsTransactionMode: 'each',
      synchronize: false,
      logging: false,
      applicationName: opts.applicationName ?? opts.schema,
      extra: { max: opts.poolSize ?? DEFAULT_POOL_SIZE },
    });
    try {
      await ds.initialize();
      await ds.runMigrations({ transaction: 'each' });
    } catch (cause) {
      if (ds.isInitialized) await ds.destroy();
      throw new PersistenceError(opts.schema, `migrations failed: ${(cause as Error).message}`, { cause });
    }
    return ds;
  } finally {
    await admin.query('SELECT pg_advisory_unlock($1)', [key]).catch(() => undefined);
    await admin.end().catch(() => undefined);
  }
}
