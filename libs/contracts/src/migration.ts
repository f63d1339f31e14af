import { createHash } from 'node:crypto';
import { z } from 'zod';

/**
 * Migration intake: what an operator publishes on `ccm.req.migrate` and `ccm.req.cancel` (JetStream
 * stream CCM_REQUESTS, so a request waits while no coordinator runs), and the vocabulary every other
 * migration contract shares: ids, workload kinds, priorities and phases.
 */

/** The event aggregate of migrations: `ccm.evt.migration.<id>.<pastTense>`. */
export const MIGRATION_AGGREGATE = 'migration' as const;

/** An id that is also one subject token: letters, digits, `-` and `_`, at most 100 characters. */
export const IdSchema = z
  .string()
  .max(100)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]*$/, 'must be letters, digits, "-" and "_" (a subject token)');

/** What moves: a container (CRIU between two confidential VMs) or a whole confidential VM. */
export const WORKLOAD_KINDS = ['container', 'vm'] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

/**
 * Why the migration is wanted; admission serves higher ranks first, then first come, first served.
 * `evacuation` (a host must be emptied now) > `maintenance` (planned work) > `user` (asked for).
 */
export const MIGRATION_PRIORITIES = ['user', 'maintenance', 'evacuation'] as const;
export type MigrationPriority = (typeof MIGRATION_PRIORITIES)[number];

/** Queue rank of each priority: larger is served first. */
export const PRIORITY_RANK: Readonly<Record<MigrationPriority, number>> = Object.freeze({
  user: 0,
  maintenance: 1,
  evacuation: 2,
});

/**
 * Phases of a migration as the coordinator reports them: the saga phases of libs/saga (same strings)
 * plus `Rejected`, for a request refused at intake that never became a saga.
 */
export const MIGRATION_PHASES = [
  /** Accepted and queued for admission; nothing has been sent to any participant. */
  'Pending',
  'Running',
  'Compensating',
  'Cancelling',
  'Succeeded',
  'RolledBack',
  'Cancelled',
  'NeedsOperator',
  /** Refused at intake (e.g. the workload already has an active migration); final. */
  'Rejected',
] as const;
export type MigrationPhase = (typeof MIGRATION_PHASES)[number];

const FINAL: ReadonlySet<string> = new Set([
  'Succeeded',
  'RolledBack',
  'Cancelled',
  'NeedsOperator',
  'Rejected',
]);

/** True for phases a migration never leaves. */
export function isFinalMigrationPhase(phase: string): boolean {
  return FINAL.has(phase);
}

/**
 * `ccm.req.migrate`: move `workload` from `sourceHost` to `targetHost`. The envelope's
 * `idempotencykey` names the request: the same key always means the same migration (see
 * {@link migrationIdFor}); without one the envelope id is used.
 */
export const MigrateRequestSchema = z
  .strictObject({
    workload: IdSchema,
    kind: z.enum(WORKLOAD_KINDS).default('container'),
    sourceHost: IdSchema,
    targetHost: IdSchema,
    priority: z.enum(MIGRATION_PRIORITIES).default('user'),
    /**
     * Container migrations: the confidential VM the container runs in on the source host, whose guest
     * the key-broker attests for the migration key (see key-broker `release-migration-key`).
     */
    sourceVm: IdSchema.optional(),
    /**
     * VM migrations: when pre-copy does not converge, the source host-agent may switch to post-copy
     * (QEMU `postcopy-ram`). Once the destination runs in post-copy the source cannot resume, so the
     * saga is past its point of no return from the switch-over on: a later failure is not rolled back.
     */
    allowPostcopy: z.boolean().optional(),
    /** Free text for the audit trail ("kernel update on host-a"). */
    reason: z.string().max(500).optional(),
  })
  .refine((r) => r.sourceHost !== r.targetHost, {
    path: ['targetHost'],
    message: 'must differ from sourceHost',
  })
  .refine((r) => !r.allowPostcopy || r.kind === 'vm', {
    path: ['allowPostcopy'],
    message: 'only a VM migration can switch to post-copy',
  });
export type MigrateRequest = z.infer<typeof MigrateRequestSchema>;
export type MigrateRequestInput = z.input<typeof MigrateRequestSchema>;

/** `ccm.req.cancel`: stop a migration; accepted before the point of no return, refused after it. */
export const CancelRequestSchema = z.strictObject({
  migrationId: IdSchema,
  reason: z.string().max(500).optional(),
});
export type CancelRequest = z.infer<typeof CancelRequestSchema>;

/** Idempotency keys accepted on intake (they are hashed into the migration id, never put in a subject). */
export const IdempotencyKeySchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

/**
 * The migration id of a request: `mig-` and 24 hex digits of SHA-256 over the idempotency key. The
 * coordinator and the CLI derive it independently, so the CLI can print and follow a migration the
 * moment it publishes the request, and a repeated key can only ever name the one migration.
 */
export function migrationIdFor(idempotencyKey: string): string {
  return `mig-${createHash('sha256').update(`ccm-migration:${idempotencyKey}`).digest('hex').slice(0, 24)}`;
}
