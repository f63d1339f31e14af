import { z } from 'zod';
import { MIGRATION_STATUSES } from './commands.js';

/** QEMU's event timestamp: wall-clock time on the QEMU host when the event was emitted. */
export interface QmpTimestamp {
  seconds: number;
  microseconds: number;
}

/** Any QMP event. Events CCM knows are checked against {@link EVENT_DATA_SCHEMAS}; others pass through as-is. */
export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: QmpTimestamp;
}

export const EVENT_DATA_SCHEMAS = {
  /** Migration status changed (both ends, with the `events` migration capability). */
  MIGRATION: z.looseObject({ status: z.enum(MIGRATION_STATUSES) }),
  /** The source started RAM pass `pass` (the same number as query-migrate's dirty-sync-count). */
  MIGRATION_PASS: z.looseObject({ pass: z.number().int() }),
  /** The VM's vCPUs stopped (on the source: the start of the migration downtime). */
  STOP: z.looseObject({}),
  /** The VM's vCPUs resumed (on the destination: the end of the downtime). */
  RESUME: z.looseObject({}),
  /** QEMU is shutting down; `guest` says whether the guest asked for it. */
  SHUTDOWN: z.looseObject({ guest: z.boolean(), reason: z.string() }),
} as const;

export type KnownEventName = keyof typeof EVENT_DATA_SCHEMAS;
export type QmpEventData = { [N in KnownEventName]: z.infer<(typeof EVENT_DATA_SCHEMAS)[N]> };

/** An event whose name and data shape are known and were checked at runtime. */
export type TypedQmpEvent<N extends KnownEventName> = QmpEvent & { event: N; data: QmpEventData[N] };

export function isKnownEventName(name: string): name is KnownEventName {
  return Object.prototype.hasOwnProperty.call(EVENT_DATA_SCHEMAS, name);
}

/** Type guard: `isEvent(e, 'MIGRATION')` narrows `e.data` to `{ status: MigrationStatus }`. */
export function isEvent<N extends KnownEventName>(e: QmpEvent, name: N): e is TypedQmpEvent<N> {
  return e.event === name;
}

/** Checks a known event's data; returns the zod error text when it does not match, else undefined. */
export function checkEventData(name: string, data: Record<string, unknown>): string | undefined {
  if (!isKnownEventName(name)) return undefined;
  const r = EVENT_DATA_SCHEMAS[name].safeParse(data);
  return r.success ? undefined : z.prettifyError(r.error);
}
