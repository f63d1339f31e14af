import { randomUUID } from 'node:crypto';
import {
  IdempotencyKeySchema,
  MigrateRequestSchema,
  migrationIdFor,
  type MigrateRequest,
} from '@ccm/contracts';
import { type Connection } from '../context.js';
import { usageError } from '../errors.js';
import { queueRequest } from './requests.js';

export interface MigrateArgs {
  workload?: string;
  from?: string;
  to?: string;
  kind?: string;
  priority?: string;
  reason?: string;
  idempotencyKey?: string;
  /** A container's VM on the source host (`--vm`): the guest the key-broker attests for its key. */
  vm?: string;
  /** `--allow-postcopy`: a VM migration may switch to post-copy when pre-copy stalls. */
  allowPostcopy?: boolean;
}

/** What `ccm migrate` sent: the migration id is derived from the idempotency key. */
export interface MigrateRequested {
  migrationId: string;
  idempotencyKey: string;
  request: MigrateRequest;
}

/** Validates the flags into a migrate request (the same schema the coordinator applies). */
export function buildMigrateRequest(a: MigrateArgs): { request: MigrateRequest; key: string } {
  if (!a.workload)
    throw usageError(
      'migrate needs the workload to move',
      'e.g. `ccm migrate web-1 --from host-a --to host-b`',
    );
  if (!a.from || !a.to) throw usageError('migrate needs --from HOST and --to HOST');
  const parsed = MigrateRequestSchema.safeParse({
    workload: a.workload,
    sourceHost: a.from,
    targetHost: a.to,
    ...(a.kind ? { kind: a.kind } : {}),
    ...(a.priority ? { priority: a.priority } : {}),
    ...(a.reason ? { reason: a.reason } : {}),
    ...(a.vm ? { sourceVm: a.vm } : {}),
    ...(a.allowPostcopy ? { allowPostcopy: true } : {}),
  });
  if (!parsed.success) {
    const flag: Record<string, string> = {
      sourceHost: '--from',
      targetHost: '--to',
      workload: 'workload',
      sourceVm: '--vm',
      allowPostcopy: '--allow-postcopy',
    };
    const problems = parsed.error.issues.map((i) => {
      const field = String(i.path[0] ?? '');
      return `${flag[field] ?? `--${field}`}: ${i.message}`;
    });
    throw usageError(`invalid migrate request: ${problems.join('; ')}`);
  }
  const key = a.idempotencyKey ?? randomUUID();
  const k = IdempotencyKeySchema.safeParse(key);
  if (!k.success) throw usageError(`--idempotency-key ${k.error.issues[0]?.message ?? 'is invalid'}`);
  return { request: parsed.data, key };
}

/**
 * `ccm migrate`: publishes a signed migrate request on `ccm.req.migrate` (JetStream, so it waits
 * while no coordinator runs) and returns the migration id its idempotency key names.
 */
export async function publishMigrate(
  conn: Connection,
  request: MigrateRequest,
  key: string,
): Promise<MigrateRequested> {
  await queueRequest(conn, 'migrate', request, key);
  return { migrationId: migrationIdFor(key), idempotencyKey: key, request };
}
