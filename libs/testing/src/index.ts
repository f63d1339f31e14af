export { freePort } from './ports.js';
export { PollAbortError, pollUntil, PollTimeoutError, type PollOptions } from './poll.js';
export {
  ensureNatsServer,
  startNatsServer,
  NatsServerMissingError,
  type NatsServerOptions,
  type RunningNats,
} from './nats-server.js';
export {
  POSTGRES_LOG,
  startPostgres,
  PostgresStartError,
  type PostgresOptions,
  type RunningPostgres,
} from './postgres.js';
export { startTestStack, type TestStack } from './stack.js';
export { RawNatsClient, RawNatsError, type RawMessage, type RawOutcome } from './raw-nats.js';
export { ccmFailure } from './ccm-failure.js';
export {
  builtServiceEntry,
  httpUrlOf,
  REPO_ROOT,
  startServiceProcess,
  STOP_GRACE_MS,
  type ServiceExit,
  type ServiceProcess,
  type ServiceProcessOptions,
} from './service-process.js';
export { stepCommand } from './step-command.js';
export { metricSamples, parseSamples, type MetricSample } from './metrics.js';
export { overlayAdmission } from './overlay-admission.js';
export { guestClient, startGuest, type GuestClient, type GuestProcess } from './guest-agents.js';
export {
  ask,
  bytesOf,
  codeOf,
  consumerBacklog,
  deadLetters,
  publishToStream,
  rawAs,
  sealed,
  type DeadLetter,
} from './envelope-probe.js';
export { newMigration, OperatorClient, settled, type SeenEvent } from './operator.js';
export {
  defaultResult,
  ScriptedParticipants,
  type Behaviour,
  type Effect,
  type ParticipantStack,
  type ReceivedCommand,
  type Script,
  type Svc,
} from './scripted-participants.js';
export { FAST_ENV, participantSteps, startActors } from './saga-actors.js';
export {
  bridgedHostsUnavailable,
  createBridgedHosts,
  ip,
  ipOrThrow,
  netnsUnavailable,
  type BridgedHost,
  type BridgedHosts,
} from './bridged-hosts.js';
export { counterReaches, counters, lastOf } from './serial-counter.js';
export { hostClient, type HostClient } from './host-client.js';
export { chainFromPlatform, expectedLaunchDigest } from './guest-owner.js';
export { tamperingProxy, type Tamper } from './tampering-proxy.js';
