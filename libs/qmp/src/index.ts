/**
 * @ccm/qmp: talks to QEMU over QMP and launches QEMU processes. An adapter: node and zod only.
 */
export {
  QmpClient,
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_CONNECT_RETRY_INTERVAL_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_GREETING_TIMEOUT_MS,
  type ExecuteOptions,
  type ExecuteRest,
  type QmpConnectOptions,
  type WaitForEventOptions,
} from './client.js';
export {
  FINAL_MIGRATION_STATUSES,
  MIGRATION_STATUSES,
  RUN_STATES,
  type MigrateSetParametersArgs,
  type MigrationCapabilityName,
  type MigrationInfo,
  type MigrationParameters,
  type MigrationRamStats,
  type MigrationStatus,
  type QmpArgs,
  type QmpCommandMap,
  type QmpCommandName,
  type QmpReturn,
  type RunState,
  type SevCapability,
  type SevInfo,
  type SevLaunchMeasureInfo,
  type StatusInfo,
} from './commands.js';
export {
  QmpError,
  QmpSocketClosedError,
  QmpConnectTimeoutError,
  QmpConnectError,
  QmpCommandTimeoutError,
  QmpCommandError,
  QmpMalformedReplyError,
  QmpGreetingError,
  QmpEventTimeoutError,
  QmpMigrationError,
  QemuConfigError,
  QemuStartError,
  isQmpError,
  isQmpSocketClosed,
  isQmpCommandError,
  isQmpTimeout,
  type MalformedReason,
} from './errors.js';
export type { EventStream } from './event-stream.js';
export {
  isEvent,
  isKnownEventName,
  type KnownEventName,
  type QmpEvent,
  type QmpEventData,
  type QmpTimestamp,
  type TypedQmpEvent,
} from './events.js';
export type { QmpGreeting } from './protocol.js';
export {
  awaitMigrationEnd,
  configureMigration,
  driveMigration,
  migrationFigures,
  DEFAULT_MIGRATION_POLL_MS,
  DEFAULT_MIGRATION_TIMEOUT_MS,
  type AwaitMigrationOptions,
  type MigrationFigures,
  type MigrationOutcome,
  type MigrationSetup,
  type TimedEvent,
} from './migration.js';
export {
  ACCEL_ENV,
  detectAccelerator,
  type Accelerator,
  type AcceleratorChoice,
  type HostProbe,
} from './accel.js';
export {
  buildQemuArgs,
  DEFAULT_CPUS,
  DEFAULT_MEMORY_MIB,
  escapeOptionValue,
  type QemuGuestSpec,
} from './qemu-args.js';
export {
  startQemu,
  findQemuBinary,
  DEFAULT_START_TIMEOUT_MS,
  type QemuExit,
  type QemuPaths,
  type QemuProcess,
  type StartQemuOptions,
} from './qemu.js';
export {
  chooseQemuBinary,
  defaultSeabios,
  trixieQemu,
  parseQemuVersion,
  qemuVersion,
  QEMU_BIN_ENV,
  DEFAULT_QEMU_BINARY,
  TRIXIE_QEMU_WRAPPER,
  type QemuBinaryChoice,
  type QemuBinarySource,
} from './qemu-binary.js';
export {
  GUEST_RAM_FILE,
  isVmProcess,
  killVmProcesses,
  pidAlive,
  readPid,
  SEV_CONTEXT_FILE,
  signalPid,
  vmPaths,
  type VmPaths,
} from './vm-run-dir.js';
export { tapName } from './tap-name.js';
