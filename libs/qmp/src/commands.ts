import { z } from 'zod';

/**
 * The QMP commands CCM uses, with their argument types and runtime schemas for their replies
 * (QEMU's qapi/*.json, checked against QEMU 7.2 and 10.0). Reply objects are loose: fields a newer QEMU
 * adds pass through untyped, while the fields CCM reads are checked.
 */

/** QEMU's RunState (qapi/run-state.json). */
export const RUN_STATES = [
  'debug',
  'inmigrate',
  'internal-error',
  'io-error',
  'paused',
  'postmigrate',
  'prelaunch',
  'finish-migrate',
  'restore-vm',
  'running',
  'save-vm',
  'shutdown',
  'suspended',
  'watchdog',
  'guest-panicked',
  'colo',
] as const;
export type RunState = (typeof RUN_STATES)[number];

/** QEMU's MigrationStatus (qapi/migration.json). */
export const MIGRATION_STATUSES = [
  'none',
  'setup',
  'cancelling',
  'cancelled',
  'active',
  'postcopy-active',
  'postcopy-paused',
  'postcopy-recover-setup',
  'postcopy-recover',
  'completed',
  'failed',
  'colo',
  'pre-switchover',
  'device',
  'wait-unplug',
] as const;
export type MigrationStatus = (typeof MIGRATION_STATUSES)[number];

/** Statuses after which a migration makes no further progress. */
export const FINAL_MIGRATION_STATUSES: ReadonlySet<MigrationStatus> = new Set([
  'completed',
  'failed',
  'cancelled',
]);

const int = z.number().int();
const empty = z.looseObject({});

export const statusInfoSchema = z.looseObject({
  running: z.boolean(),
  status: z.enum(RUN_STATES),
  singlestep: z.boolean().optional(),
});
export type StatusInfo = z.infer<typeof statusInfoSchema>;

export const migrationRamStatsSchema = z.looseObject({
  transferred: int,
  remaining: int,
  total: int,
  duplicate: int,
  normal: int,
  'normal-bytes': int,
  'dirty-pages-rate': int,
  mbps: z.number(),
  'dirty-sync-count': int,
  'postcopy-requests': int.optional(),
  'page-size': int.optional(),
  'multifd-bytes': int.optional(),
  'pages-per-second': int.optional(),
  'precopy-bytes': int.optional(),
  'downtime-bytes': int.optional(),
  'postcopy-bytes': int.optional(),
});
export type MigrationRamStats = z.infer<typeof migrationRamStatsSchema>;

export const migrationInfoSchema = z.looseObject({
  status: z.enum(MIGRATION_STATUSES).optional(),
  ram: migrationRamStatsSchema.optional(),
  'total-time': int.optional(),
  'expected-downtime': int.optional(),
  downtime: int.optional(),
  'setup-time': int.optional(),
  'error-desc': z.string().optional(),
  'blocked-reasons': z.array(z.string()).optional(),
});
export type MigrationInfo = z.infer<typeof migrationInfoSchema>;

/** The migration capabilities CCM sets; QEMU accepts more, passed as plain strings. */
export type MigrationCapabilityName =
  | 'events'
  | 'xbzrle'
  | 'auto-converge'
  | 'postcopy-ram'
  | 'multifd'
  | 'pause-before-switchover'
  | 'return-path'
  | (string & {});

/** migrate-set-parameters arguments (units as QEMU defines them). */
export interface MigrateSetParametersArgs {
  /** Maximum downtime QEMU aims for in the final stop-and-copy phase, milliseconds. */
  'downtime-limit'?: number;
  /** Bandwidth cap, bytes per second. */
  'max-bandwidth'?: number;
  'announce-initial'?: number;
  'multifd-channels'?: number;
  'x-checkpoint-delay'?: number;
  'cpu-throttle-initial'?: number;
  'cpu-throttle-increment'?: number;
}

export const migrationParametersSchema = z.looseObject({
  'downtime-limit': int.optional(),
  'max-bandwidth': int.optional(),
});
export type MigrationParameters = z.infer<typeof migrationParametersSchema>;

export const sevInfoSchema = z.looseObject({
  enabled: z.boolean(),
  'api-major': int,
  'api-minor': int,
  'build-id': int,
  policy: int.optional(),
  state: z.string(),
  handle: int.optional(),
  'sev-type': z.string().optional(),
});
export type SevInfo = z.infer<typeof sevInfoSchema>;

export const sevCapabilitySchema = z.looseObject({
  pdh: z.string(),
  'cert-chain': z.string(),
  'cpu0-id': z.string().optional(),
  cbitpos: int,
  'reduced-phys-bits': int,
});
export type SevCapability = z.infer<typeof sevCapabilitySchema>;

export const sevLaunchMeasureSchema = z.looseObject({ data: z.string() });
export type SevLaunchMeasureInfo = z.infer<typeof sevLaunchMeasureSchema>;

/**
 * Each command's argument type (`undefined` when it takes none) and reply type. The reply types are
 * derived from the runtime schemas in {@link REPLY_SCHEMAS}, so the two cannot drift apart.
 */
export interface QmpCommandMap {
  qmp_capabilities: { args: { enable?: string[] } | undefined; ret: Record<string, unknown> };
  'query-status': { args: undefined; ret: StatusInfo };
  cont: { args: undefined; ret: Record<string, unknown> };
  stop: { args: undefined; ret: Record<string, unknown> };
  quit: { args: undefined; ret: Record<string, unknown> };
  migrate: { args: { uri: string; resume?: boolean }; ret: Record<string, unknown> };
  'migrate-incoming': { args: { uri: string }; ret: Record<string, unknown> };
  'migrate-set-capabilities': {
    args: { capabilities: { capability: MigrationCapabilityName; state: boolean }[] };
    ret: Record<string, unknown>;
  };
  'migrate-set-parameters': { args: MigrateSetParametersArgs; ret: Record<string, unknown> };
  'query-migrate-parameters': { args: undefined; ret: MigrationParameters };
  'query-migrate': { args: undefined; ret: MigrationInfo };
  migrate_cancel: { args: undefined; ret: Record<string, unknown> };
  'migrate-continue': { args: { state: MigrationStatus }; ret: Record<string, unknown> };
  /** Switch a running migration (with `postcopy-ram` on both ends) from pre-copy to post-copy. */
  'migrate-start-postcopy': { args: undefined; ret: Record<string, unknown> };
  'query-sev': { args: undefined; ret: SevInfo };
  'query-sev-capabilities': { args: undefined; ret: SevCapability };
  'query-sev-launch-measure': { args: undefined; ret: SevLaunchMeasureInfo };
  'sev-inject-launch-secret': {
    /** Base64 packet header and secret from the guest owner; `gpa` defaults to the OVMF secret area. */
    args: { 'packet-header': string; secret: string; gpa?: number };
    ret: Record<string, unknown>;
  };
  'human-monitor-command': { args: { 'command-line': string; 'cpu-index'?: number }; ret: string };
}

export type QmpCommandName = keyof QmpCommandMap;
export type QmpArgs<C extends QmpCommandName> = QmpCommandMap[C]['args'];
export type QmpReturn<C extends QmpCommandName> = QmpCommandMap[C]['ret'];

export const REPLY_SCHEMAS: { readonly [C in QmpCommandName]: z.ZodType<QmpReturn<C>> } = {
  qmp_capabilities: empty,
  'query-status': statusInfoSchema,
  cont: empty,
  stop: empty,
  quit: empty,
  migrate: empty,
  'migrate-incoming': empty,
  'migrate-set-capabilities': empty,
  'migrate-set-parameters': empty,
  'query-migrate-parameters': migrationParametersSchema,
  'query-migrate': migrationInfoSchema,
  migrate_cancel: empty,
  'migrate-continue': empty,
  'migrate-start-postcopy': empty,
  'query-sev': sevInfoSchema,
  'query-sev-capabilities': sevCapabilitySchema,
  'query-sev-launch-measure': sevLaunchMeasureSchema,
  'sev-inject-launch-secret': empty,
  'human-monitor-command': z.string(),
};
