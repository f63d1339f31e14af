export * from './errors.js';
export * from './log.js';
export { type CommandRunner, type RunOptions, type RunResult, execRunner, nsenterRunner } from './runner.js';
export { NETWORK_LOCKS, type NetworkLock } from './args.js';
export {
  Criu,
  CRIU_TIMEOUT_MS,
  type CriuAdapterOptions,
  type CriuRun,
  type DumpOptions,
  type PreDumpOptions,
  type RestoreOptions,
} from './criu.js';
export {
  Runc,
  type RuncCheckpointOptions,
  type RuncOptions,
  type RuncRestoreOptions,
  type RuncState,
} from './runc.js';
export { openTrixieNamespace, trixieNamespaceUnavailable, type TrixieNamespace } from './trixie-namespace.js';
