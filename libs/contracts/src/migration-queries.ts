import { z } from 'zod';
import { ErrorPayloadSchema } from './errors.js';
import { MigrationFiguresSchema } from './migration-events.js';
import { IdSchema, MIGRATION_PHASES, MIGRATION_PRIORITIES, WORKLOAD_KINDS } from './migration.js';

/**
 * Queries the saga-coordinator answers, over NATS (`ccm.cmd.saga-coordinator.get-migration` and
 * `list-migrations`) and HTTP (`GET /migrations/:id`, `GET /migrations?phase=&host=&limit=&cursor=`).
 * The same schemas validate both; numbers are coerced so HTTP query strings parse too.
 */
export const GET_MIGRATION_VERB = 'get-migration';
export const LIST_MIGRATIONS_VERB = 'list-migrations';

/** Longest page a list query returns. */
export const MAX_PAGE_SIZE = 500;
export const DEFAULT_PAGE_SIZE = 50;

export const GetMigrationRequestSchema = z.strictObject({ migrationId: IdSchema });
export type GetMigrationRequest = z.infer<typeof GetMigrationRequestSchema>;

/** Newest first; `cursor` is the `nextCursor` of the previous page (opaque). */
export const ListMigrationsRequestSchema = z.strictObject({
  phase: z.enum(MIGRATION_PHASES).optional(),
  /** Migrations whose source or target is this host. */
  host: IdSchema.optional(),
  limit: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(DEFAULT_PAGE_SIZE),
  /** `c` and a migration's sequence number; at most 18 digits, so it always fits a Postgres bigint. */
  cursor: z
    .string()
    .max(19)
    .regex(/^c[0-9]{1,18}$/, 'must be the nextCursor of a previous page')
    .optional(),
});
export type ListMigrationsRequest = z.input<typeof ListMigrationsRequestSchema>;

const Iso = z.iso.datetime({ offset: true });

/** One migration in a list. */
export const MigrationSummarySchema = z.object({
  id: IdSchema,
  saga: z.string(),
  kind: z.enum(WORKLOAD_KINDS),
  workload: IdSchema,
  sourceHost: IdSchema,
  targetHost: IdSchema,
  priority: z.enum(MIGRATION_PRIORITIES),
  phase: z.enum(MIGRATION_PHASES),
  reason: z.string().optional(),
  requestedBy: z.string(),
  /** The step in focus (running forward or being compensated); absent before start and after the end. */
  currentStep: z.string().optional(),
  createdAt: Iso,
  admittedAt: Iso.optional(),
  endedAt: Iso.optional(),
  updatedAt: Iso,
});
export type MigrationSummary = z.infer<typeof MigrationSummarySchema>;

/** One attempt of a step's action or compensation. */
export const StepAttemptViewSchema = z.object({
  kind: z.enum(['action', 'compensation']),
  attempt: z.number().int().min(1),
  status: z.enum(['InFlight', 'Succeeded', 'Failed', 'TimedOut']),
  participant: z.string(),
  command: z.string(),
  idempotencyKey: z.string(),
  sentAt: Iso,
  deadlineAt: Iso,
  endedAt: Iso.optional(),
  durationMs: z.number().min(0).optional(),
  error: ErrorPayloadSchema.omit({ retryable: true }).partial({ details: true }).optional(),
});

export const StepViewSchema = z.object({
  name: z.string(),
  status: z.string(),
  attempts: z.array(StepAttemptViewSchema),
});
export type StepView = z.infer<typeof StepViewSchema>;

/** One migration with its phase and step history. */
export const MigrationDetailSchema = MigrationSummarySchema.extend({
  idempotencyKey: z.string(),
  phaseHistory: z.array(z.object({ phase: z.string(), at: Iso, reason: z.string().optional() })),
  steps: z.array(StepViewSchema),
  /**
   * Set when a step's result moved the saga's point of no return before its pivot: a VM migration
   * that switched to post-copy cannot be undone once `switch-over` is sent; a failure from there on
   * ends NeedsOperator, with nothing rolled back.
   */
  pointOfNoReturn: z.object({ step: z.string(), reason: z.string() }).optional(),
  /** The last data-plane progress a participant reported, while a transfer runs. */
  progress: z.record(z.string(), z.unknown()).optional(),
  /** `seq` of the last event published for it: follow events with a larger seq. */
  eventSeq: z.number().int().min(0),
  /** Blackout beside the overlay's brownout, once measured (see MigrationFiguresSchema). */
  figures: MigrationFiguresSchema.optional(),
});
export type MigrationDetail = z.infer<typeof MigrationDetailSchema>;

export const MigrationPageSchema = z.object({
  items: z.array(MigrationSummarySchema),
  nextCursor: z.string().optional(),
});
export type MigrationPage = z.infer<typeof MigrationPageSchema>;
