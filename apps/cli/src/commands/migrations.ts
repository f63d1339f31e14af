import {
  CancelRequestSchema,
  GET_MIGRATION_VERB,
  GetMigrationRequestSchema,
  LIST_MIGRATIONS_VERB,
  ListMigrationsRequestSchema,
  MigrationDetailSchema,
  MigrationPageSchema,
  type MigrationDetail,
  type MigrationPage,
} from '@ccm/contracts';
import { type Connection } from '../context.js';
import { usageError } from '../errors.js';
import { askCoordinator, queueRequest } from './requests.js';

const problems = (issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>) =>
  issues.map((i) => `--${String(i.path[0] ?? 'query')}: ${i.message}`).join('; ');

/** `ccm migrations`: one page of migrations, filtered by phase and host. */
export function listMigrations(
  conn: Connection,
  flags: { phase?: string; host?: string; limit?: string; cursor?: string },
  timeoutMs: number,
): Promise<MigrationPage> {
  const { phase, host, limit, cursor } = flags;
  const q = ListMigrationsRequestSchema.safeParse(
    Object.fromEntries(Object.entries({ phase, host, limit, cursor }).filter(([, v]) => v !== undefined)),
  );
  if (!q.success) throw usageError(`invalid query: ${problems(q.error.issues)}`);
  return askCoordinator(conn, LIST_MIGRATIONS_VERB, q.data, MigrationPageSchema, timeoutMs);
}

/** `ccm migration <id>`: one migration with its phase and step history. */
export function getMigration(
  conn: Connection,
  id: string | undefined,
  timeoutMs: number,
): Promise<MigrationDetail> {
  const q = GetMigrationRequestSchema.safeParse({ migrationId: id });
  if (!q.success)
    throw usageError(
      `migration needs a migration id, got ${JSON.stringify(id ?? '')}`,
      'list them with `ccm migrations`',
    );
  return askCoordinator(conn, GET_MIGRATION_VERB, q.data, MigrationDetailSchema, timeoutMs);
}

/** `ccm cancel <id>`: publishes a signed cancel request on `ccm.req.cancel`. */
export async function publishCancel(
  conn: Connection,
  id: string | undefined,
  reason?: string,
): Promise<void> {
  const req = CancelRequestSchema.safeParse({ migrationId: id, ...(reason ? { reason } : {}) });
  if (!req.success) throw usageError(`cancel needs a migration id: ${problems(req.error.issues)}`);
  await queueRequest(conn, 'cancel', req.data);
}
