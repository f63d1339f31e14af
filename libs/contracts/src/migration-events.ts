import { z } from 'zod';
import { ErrorPayloadSchema } from './errors.js';
import {
  IdSchema,
  MIGRATION_AGGREGATE,
  MIGRATION_PHASES,
  MIGRATION_PRIORITIES,
  WORKLOAD_KINDS,
} from './migration.js';
import { subjects } from './subjects.js';

/**
 * Progress events of a migration, published by the saga-coordinator (through its outbox) on
 * `ccm.evt.migration.<id>.<name>`, and the data-plane progress participants publish for it to forward.
 * Every migration event carries `migrationId`, a per-migration `seq` (1, 2, 3, ... in the order the
 * coordinator committed them: use it to order and to spot gaps) and `at`.
 */

const Iso = z.iso.datetime({ offset: true });
const Base = z.object({ migrationId: IdSchema, seq: z.number().int().min(1), at: Iso });

/** Which command of which step an event is about. */
const StepRef = Base.extend({
  step: z.string(),
  attempt: z.number().int().min(1),
  participant: z.string(),
  command: z.string(),
});

/** A step command was sent (`step-started`, `compensation-started`). */
const StepStarted = StepRef.extend({ timeoutMs: z.number().min(0) });

/** A step command settled (`step-succeeded|failed|timed-out`, `compensation-...`): how long it took. */
const StepSettled = StepRef.extend({
  durationMs: z.number().min(0),
  /** Failures: the participant's error (`retryable` is in the retry-scheduled event, if any). */
  error: ErrorPayloadSchema.omit({ retryable: true }).optional(),
  /** Failed actions: whether the participant may have acted (then the step is compensated). */
  effect: z.enum(['none', 'maybe']).optional(),
});

/**
 * Data-plane progress a participant reports while a long step runs: container-checkpoint during
 * pre-copy on `ccm.evt.checkpoint.<migrationId>.progressed`, host-agent during convergence on
 * `ccm.evt.transfer.<migrationId>.progressed`. The coordinator forwards it as `progressed`.
 */
export const DataPlaneProgressSchema = z.object({
  migrationId: IdSchema,
  step: z.string().min(1).max(100),
  /** What is happening, for people: "pre-dump round 3", "converging". */
  stage: z.string().max(200).optional(),
  round: z.number().int().min(0).optional(),
  /** What the step has moved so far (pre-copy: every round's image bytes). */
  bytesTransferred: z.number().int().min(0),
  /** What the step will have moved in all, when the reporter knows it or estimates it (below). */
  bytesTotal: z.number().int().min(0).optional(),
  /**
   * `bytesTotal` is an estimate, not a known size: pre-copy's is what has moved plus the pages dirty
   * now (what one more round would move), which grows when the workload writes on.
   */
  bytesTotalEstimated: z.boolean().optional(),
  /** What is still to move as the reporter counts it now (pre-copy: dirty pages × 4 KiB). */
  remainingBytes: z.number().int().min(0).optional(),
  dirtyBytesPerSecond: z.number().min(0).optional(),
  expectedDowntimeMs: z.number().min(0).optional(),
  at: Iso,
});
export type DataPlaneProgress = z.infer<typeof DataPlaneProgressSchema>;

/** Where participants publish data-plane progress for migration `id`. */
export const progressSubjects = {
  checkpoint: (migrationId: string): string => subjects.evt('checkpoint', migrationId, 'progressed'),
  transfer: (migrationId: string): string => subjects.evt('transfer', migrationId, 'progressed'),
};

/**
 * What a migration measured, as the coordinator reads it from its step replies. Containers: the
 * blackout runs from the freeze-dump command to the cut-over reply (the workload ran nowhere), the
 * brownout is the overlay's: how long its /32 answered from nowhere during the cut-over (null when the
 * overlay could not see the target answer within its wait). VMs: the blackout is the switch-over step.
 */
export const MigrationFiguresSchema = z.object({
  blackoutMs: z.number().min(0).optional(),
  brownoutMs: z.number().min(0).nullable().optional(),
  /** The overlay's cut-over: move started to every peer updated. */
  cutOverMs: z.number().min(0).optional(),
  peersUpdated: z.number().int().min(0).optional(),
  /** VMs: the stop-and-copy downtime the hypervisor reported. */
  downtimeMs: z.number().min(0).optional(),
  /**
   * Containers: the frozen time container-checkpoint measured, from the source's freeze to the resume
   * at the target (its restore step); the blackout adds the cut-over to it.
   */
  frozenMs: z.number().min(0).optional(),
});
export type MigrationFigures = z.infer<typeof MigrationFiguresSchema>;

/** Every migration event by its subject's last token (past tense), with its data schema. */
export const MIGRATION_EVENTS = {
  /** Intake accepted the request; the migration waits for admission. */
  requested: Base.extend({
    workload: IdSchema,
    kind: z.enum(WORKLOAD_KINDS),
    sourceHost: IdSchema,
    targetHost: IdSchema,
    priority: z.enum(MIGRATION_PRIORITIES),
    requestedBy: z.string(),
    /**
     * The operator's signed request envelope, exactly as received: the coordinator's hash chain for the
     * migration starts from its hash, so an auditor can check who asked for what without CCM_REQUESTS.
     */
    request: z.record(z.string(), z.unknown()).optional(),
  }),
  /** Intake refused the request (final); nothing was started. */
  rejected: Base.extend({ code: z.string(), message: z.string() }),
  /** Admission control let it run; it waited `waitedMs` in the queue. */
  admitted: Base.extend({ waitedMs: z.number().min(0) }),
  'phase-changed': Base.extend({
    from: z.enum(MIGRATION_PHASES),
    to: z.enum(MIGRATION_PHASES),
    reason: z.string().optional(),
  }),
  'step-started': StepStarted,
  'step-succeeded': StepSettled,
  'step-failed': StepSettled,
  'step-timed-out': StepSettled,
  'compensation-started': StepStarted,
  'compensation-succeeded': StepSettled,
  'compensation-failed': StepSettled,
  'compensation-timed-out': StepSettled,
  /** The attempt `attempt` of a step's action or compensation will be sent in `delayMs`. */
  'retry-scheduled': Base.extend({
    step: z.string(),
    kind: z.enum(['action', 'compensation']),
    attempt: z.number().int().min(2),
    delayMs: z.number().min(0),
  }),
  /** Data-plane progress forwarded from a participant. */
  progressed: Base.extend({
    reporter: z.string(),
    progress: DataPlaneProgressSchema.omit({ migrationId: true }),
  }),
  /** A cancel request was accepted: compensation runs (or the migration ended before it started). */
  'cancel-accepted': Base.extend({ reason: z.string() }),
  /** A cancel request was refused; `reason` is stable, `message` says why for people. */
  'cancel-refused': Base.extend({
    reason: z.enum(['PastPointOfNoReturn', 'AlreadyRollingBack', 'AlreadyFinished']),
    message: z.string(),
  }),
  /** The migration ended in a final phase; `durationMs` from request to end. */
  finished: Base.extend({
    phase: z.enum(MIGRATION_PHASES),
    reason: z.string(),
    durationMs: z.number().min(0),
    /** Blackout and brownout, when the migration got far enough to measure them. */
    figures: MigrationFiguresSchema.optional(),
  }),
} as const;

export type MigrationEventName = keyof typeof MIGRATION_EVENTS;
export type MigrationEventData<N extends MigrationEventName> = z.infer<(typeof MIGRATION_EVENTS)[N]>;

/** `ccm.evt.migration.<id>.<name>`. */
export function migrationEventSubject(migrationId: string, name: MigrationEventName): string {
  return subjects.evt(MIGRATION_AGGREGATE, migrationId, name);
}

/** The envelope `type` of a migration event: `ccm.migration.<name>`. */
export function migrationEventType(name: MigrationEventName): string {
  return `ccm.${MIGRATION_AGGREGATE}.${name}`;
}

/** The event name of a `ccm.evt.migration.<id>.<name>` subject, or undefined for anything else. */
export function migrationEventName(subject: string): MigrationEventName | undefined {
  const parts = subject.split('.');
  const name = parts[4];
  if (parts.length !== 5 || parts[2] !== MIGRATION_AGGREGATE || !name || !(name in MIGRATION_EVENTS))
    return undefined;
  return name as MigrationEventName;
}
