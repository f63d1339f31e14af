import { z } from 'zod';
import { DataPlaneProgressSchema } from './migration-events.js';
import { IdSchema } from './migration.js';
import { subjects } from './subjects.js';

/**
 * The host-agent's contract: the commands it answers on `ccm.cmd.host.<hostId>.<verb>` (each with its
 * payload and reply schema), the facts it publishes about its host on `ccm.evt.host.<hostId>.<name>`
 * and about VM transfers on `ccm.evt.transfer.<migrationId>.<name>`, and the error codes its replies
 * carry. Binary SEV values (certificates, session blobs, packets, measurements) travel as base64 in the
 * byte formats of the AMD SEV API, exactly as QEMU takes and gives them over QMP.
 */

/** Event aggregates of the host-agent (see `EVENT_AGGREGATES`). */
export const HOST_AGGREGATE = 'host' as const;
export const TRANSFER_AGGREGATE = 'transfer' as const;

/** Every host-agent verb. */
export const HOST_VERBS = {
  platform: 'platform',
  launch: 'launch',
  injectSecret: 'inject-secret',
  prepareIncoming: 'prepare-incoming',
  startMigration: 'start-migration',
  continue: 'continue',
  cancel: 'cancel',
  pause: 'pause',
  resume: 'resume',
  destroy: 'destroy',
  describe: 'describe',
} as const;
export type HostVerb = (typeof HOST_VERBS)[keyof typeof HOST_VERBS];

/** `ccm.cmd.host.<hostId>.<verb>`. */
export const hostCommandSubject = (hostId: string, verb: HostVerb): string => subjects.hostCmd(hostId, verb);

/**
 * Error codes of host-agent replies and transfer failures, beyond the common `ErrorCodes` (which it also
 * uses: NOT_FOUND for an unknown VM or migration, CONFLICT for a command the VM's phase does not allow,
 * VALIDATION_FAILED, TIMEOUT for a hypervisor that did not answer in time).
 */
export const HostErrorCodes = {
  /** The VM process exited, or never opened its control socket, while starting. Details: stderr tail. */
  HypervisorStartFailed: 'HYPERVISOR_START_FAILED',
  /** The hypervisor answered something that is not valid QMP (or not the documented shape). */
  HypervisorProtocol: 'HYPERVISOR_PROTOCOL_ERROR',
  /** The hypervisor refused a command (a QMP error reply). */
  HypervisorRefused: 'HYPERVISOR_REFUSED',
  /** The VM process is gone (its control socket closed). */
  HypervisorGone: 'HYPERVISOR_GONE',
  /** The migration made no progress for the configured stall time and was cancelled. */
  MigrationStalled: 'MIGRATION_STALLED',
  /** The migration ended in failure (the hypervisor's reason is in the message). */
  MigrationFailed: 'MIGRATION_FAILED',
  /** The pause before switch-over lasted longer than allowed; the migration was cancelled. */
  SwitchoverTimeout: 'SWITCHOVER_TIMEOUT',
  /** The (real or emulated) secure processor refused an SEV step: bad MAC, policy, state. */
  SecureProcessorRefused: 'SECURE_PROCESSOR_REFUSED',
  /** The request needs SEV and this host has none (neither firmware nor emulator). */
  SevUnavailable: 'SEV_UNAVAILABLE',
  /**
   * A migrated guest did not prove alive on its destination: not running, or its workload made no
   * progress within the deadline. Details: `serialTail`, the last lines of its console.
   */
  GuestNotProgressing: 'GUEST_NOT_PROGRESSING',
  /**
   * The source cannot resume: its SEV context was sent (SEND_FINISH), its process ended, or a post-copy
   * migration of it failed past the point of no return (the destination may hold part of the guest:
   * `resume` refuses it unless the operator acknowledges that migration, `acknowledgeMigration`).
   * Details: `migrationId` and `reason` when it is the last case.
   */
  SourceNotResumable: 'SOURCE_NOT_RESUMABLE',
  /**
   * `prepare-incoming` with the source's guest address lease (`guestNet`) that this host cannot keep: the
   * address is outside its guest network's CIDR, another VM here holds it, or the host has no guest
   * network on the VM's bridge. Not retryable; nothing was started. Details: `address`, `reason`
   * (`outside-cidr`, `leased`, `no-guest-net`), `heldBy` for `leased`.
   */
  GuestAddressUnavailable: 'GUEST_ADDRESS_UNAVAILABLE',
  /**
   * The migration switched to post-copy and let the destination run: the guest's memory is split
   * between the hosts, so it can neither be cancelled (the source resumed) nor rolled back. Also the
   * code of such a migration that then failed (e.g. QEMU's `postcopy-paused`): it needs an operator.
   */
  PastPointOfNoReturn: 'PAST_POINT_OF_NO_RETURN',
} as const;

/** The hypervisor drivers: real QEMU over QMP, or the simulated hypervisor. */
export const HYPERVISOR_DRIVERS = ['qemu', 'sim'] as const;
export type HypervisorDriver = (typeof HYPERVISOR_DRIVERS)[number];

/** Where the host's SEV comes from: the firmware (through QEMU), the software secure processor, or none. */
export const SEV_MODES = ['hardware', 'emulated', 'none'] as const;
export type SevMode = (typeof SEV_MODES)[number];

const Iso = z.iso.datetime({ offset: true });
const Base64 = z
  .string()
  .max(1 << 20)
  .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');
const AbsolutePath = z
  .string()
  .min(2)
  .max(4096)
  .regex(/^\/[^\0]*$/, 'must be an absolute path on the host');

/** The firmware version of a platform (PLATFORM_STATUS), needed to check a launch measurement. */
export const SevPlatformVersionSchema = z.object({
  apiMajor: z.number().int().min(0).max(255),
  apiMinor: z.number().int().min(0).max(255),
  build: z.number().int().min(0).max(255),
});

/** A platform certificate chain in QEMU's `migrate-set-parameters` form: PDH, PEK‖OCA‖CEK, ASK‖ARK. */
export const SevChainBase64Schema = z.object({
  pdh: Base64,
  platCert: Base64,
  amdCert: Base64,
});
export type SevChainBase64 = z.infer<typeof SevChainBase64Schema>;

/**
 * The hypervisor program a host runs its VMs with (the qemu driver): operators and tests see which
 * QEMU and which version a host uses (Debian 12's QEMU 7.2 corrupts TCG guests migrated under heavy
 * dirtying; CCM's default is trixie's QEMU 10).
 */
export const HypervisorBinarySchema = z.object({
  /** The binary or wrapper as configured (CCM_QEMU_BIN). */
  binary: z.string(),
  /** `10.0.13`; absent when `--version` did not answer. */
  version: z.string().optional(),
  /** The first line of `--version`. */
  banner: z.string().optional(),
});
export type HypervisorBinary = z.infer<typeof HypervisorBinarySchema>;

/** What a host can do: registered with the host and reported by `platform`. */
export const HostCapabilitiesSchema = z.object({
  driver: z.enum(HYPERVISOR_DRIVERS),
  /** `kvm` or `tcg` for QEMU; `sim` for the simulated hypervisor. */
  accelerator: z.enum(['kvm', 'tcg', 'sim']),
  acceleratorReason: z.string(),
  sevMode: z.enum(SEV_MODES),
  sev: z.boolean(),
  sevEs: z.boolean(),
  sevSnp: z.boolean(),
  /** Position of the C-bit in guest page tables, and physical address bits lost to encryption. */
  cbitpos: z.number().int().min(0).optional(),
  reducedPhysBits: z.number().int().min(0).optional(),
  memoryMiB: z.number().int().min(0),
  cpus: z.number().int().min(1),
  /** The QEMU this host runs (qemu driver). */
  hypervisor: HypervisorBinarySchema.optional(),
});
export type HostCapabilities = z.infer<typeof HostCapabilitiesSchema>;

/** `platform`: the host's capabilities and its SEV certificate chain (PDH_CERT_EXPORT), when it has SEV. */
export const PlatformRequestSchema = z.object({});
export const PlatformReplySchema = z.object({
  hostId: IdSchema,
  capabilities: HostCapabilitiesSchema,
  sev: z
    .object({
      mode: z.enum(['hardware', 'emulated']),
      version: SevPlatformVersionSchema,
      chain: SevChainBase64Schema,
    })
    .optional(),
});
export type PlatformReply = z.infer<typeof PlatformReplySchema>;

/** A network interface name (Linux: at most 15 bytes). */
const IfName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/, 'must be an interface name (1–15 letters, digits, _ . -)');

/** A virtio disk: a raw image file on the host, read-only or not. */
export const VmDiskSchema = z.object({
  path: AbsolutePath,
  readOnly: z.boolean(),
});

/**
 * A virtio NIC on one of the host's bridges: the agent makes a tap for it on that bridge (and removes
 * it when the VM ends). The MAC is the guest's, kept across a migration; without one the agent makes
 * it from the VM id (so one spec serves many VMs).
 */
export const VmNicSchema = z.object({
  bridge: IfName,
  mac: z
    .string()
    .regex(/^[0-9a-f][02468ace](:[0-9a-f]{2}){5}$/, 'must be a unicast MAC address in lower-case hex')
    .optional(),
});

/** A file the guest reads over fw_cfg (`/sys/firmware/qemu_fw_cfg/by_name/<name>/raw`). */
export const VmFwCfgSchema = z.object({
  name: z
    .string()
    .max(55)
    .regex(/^opt\/[a-z0-9._-]+(\/[a-z0-9._-]+)*$/, 'must be opt/… (lower case, digits, . _ -)'),
  path: AbsolutePath,
});

/**
 * What runs in a VM. `kernel`/`initrd` are files on the host (QEMU boots them directly; the simulated
 * hypervisor loads them into guest memory); both are measured at an SEV launch. The guest reads
 * `ccm.dirty_mb=` and `ccm.dirty_rate=` from `cmdline` (the tiny test guest and the simulated guest both
 * do). Both ends of a migration must be given the same spec. `disks`, `nics`, `fwCfg` and `cpu` are for
 * the qemu driver (the container guest: its root and app disks, a NIC on the host's guest bridge, its run
 * script); the simulated hypervisor runs none and refuses them.
 */
export const VmSpecSchema = z.object({
  memoryMiB: z
    .number()
    .int()
    .min(16)
    .max(1 << 20),
  cpus: z.number().int().min(1).max(64).default(1),
  kernel: AbsolutePath.optional(),
  initrd: AbsolutePath.optional(),
  cmdline: z.string().max(4096).optional(),
  /** `-cpu`: QEMU's default model, `max` (every feature TCG emulates) or `host` (KVM only). */
  cpu: z.enum(['default', 'max', 'host']).optional(),
  disks: z.array(VmDiskSchema).max(4).optional(),
  nics: z.array(VmNicSchema).max(2).optional(),
  fwCfg: z.array(VmFwCfgSchema).max(4).optional(),
});
export type VmSpec = z.infer<typeof VmSpecSchema>;
export type VmSpecInput = z.input<typeof VmSpecSchema>;

/**
 * Phases of a VM on one host:
 */
export const VM_PHASES = [
  /** The VM process is being started. */
  'Starting',
  /** Started and paused: waiting for measurement and secret (attested launch), or paused by command. */
  'Paused',
  /** The guest runs. */
  'Running',
  /** A destination waiting for a migration stream (`prepare-incoming`). */
  'Incoming',
  /** Final: the guest moved to another host by a completed migration; the local process ended. */
  'MigratedAway',
  /** Final: destroyed by command. */
  'Destroyed',
  /** Final: could not start, or an incoming migration failed (the process ended). */
  'Failed',
  /** Final: the process ended without being asked to (killed, crashed, the guest powered off). */
  'Died',
] as const;
export type VmPhase = (typeof VM_PHASES)[number];
const FINAL_VM: ReadonlySet<string> = new Set(['MigratedAway', 'Destroyed', 'Failed', 'Died']);
/** True for VM phases without a process: the VM id may be used again. */
export const isFinalVmPhase = (phase: string): boolean => FINAL_VM.has(phase);

/**
 * A VM's address on its host's guest network (the host-agent's CCM_GUEST_NET): leased at launch and
 * handed to the guest in fw_cfg `opt/ccm/vm`. The guest keeps it across a live migration (it is in its
 * memory), so the lease travels with the VM: `describe` shows it, the VM saga carries it in its context
 * (`guestNet`) and `prepare-incoming` gives it to the destination.
 */
export const GuestLeaseSchema = z.object({
  address: z.ipv4(),
  prefix: z.number().int().min(8).max(30),
  gateway: z.ipv4().optional(),
});
export type GuestLease = z.infer<typeof GuestLeaseSchema>;

/**
 * Why a (source) VM must not be resumed: a post-copy migration of it failed past the point of no return,
 * so the destination may hold part of the guest's state. Cleared by a `resume` that acknowledges it.
 */
export const ResumeBlockedSchema = z.object({
  migrationId: IdSchema,
  reason: z.string(),
  since: Iso,
});
export type ResumeBlocked = z.infer<typeof ResumeBlockedSchema>;

/** A VM as the host-agent reports it. */
export const VmViewSchema = z.object({
  vmId: IdSchema,
  hostId: IdSchema,
  driver: z.enum(HYPERVISOR_DRIVERS),
  /** `local`: launched here; `incoming`: created as a migration destination. */
  origin: z.enum(['local', 'incoming']),
  phase: z.enum(VM_PHASES),
  reason: z.string().optional(),
  pid: z.number().int().positive().optional(),
  spec: VmSpecSchema,
  sev: z
    .object({
      policy: z.number().int().min(0),
      /** LAUNCH_MEASURE (MEASURE ‖ MNONCE, 48 bytes), base64; local launches only. */
      measurement: Base64.optional(),
      secretInjected: z.boolean(),
    })
    .optional(),
  /** For an incoming VM: where the migration stream is to be sent (`tcp:host:port`). */
  incomingUri: z.string().optional(),
  migrationId: IdSchema.optional(),
  /** Its address on the host's guest network, while it holds one. */
  guestNet: GuestLeaseSchema.optional(),
  /**
   * Set while this host keeps the VM's guest address lent: the VM moved away and its guest uses the
   * address on another host (or is coming back and has not arrived), so no VM here may lease it. Cleared
   * once that guest ends on another host (or arrives here).
   */
  guestNetLent: GuestLeaseSchema.extend({ since: Iso }).optional(),
  /** Set while `resume` is refused (SOURCE_NOT_RESUMABLE) without acknowledging this migration. */
  resumeBlocked: ResumeBlockedSchema.optional(),
  runDir: z.string(),
  createdAt: Iso,
  phaseChangedAt: Iso,
});
export type VmView = z.infer<typeof VmViewSchema>;

/** SEV parameters of an attested launch: the guest owner's GODH certificate and session blob. */
export const SevLaunchParamsSchema = z.object({
  policy: z.number().int().min(0).max(0xffffffff),
  /** The guest owner's Diffie-Hellman certificate (2084 bytes), base64. */
  godh: Base64,
  /** The launch session blob (nonce, wrapped TEK/TIK, policy MAC), base64. */
  session: Base64,
});

/**
 * `launch`: start a VM. With `sev` it is an attested launch: the VM starts paused, the secure processor
 * measures what was loaded (LAUNCH_START/UPDATE/MEASURE), and the reply carries the measurement; the
 * guest owner checks it, then sends `inject-secret` and `resume`.
 */
export const LaunchRequestSchema = z.object({
  vmId: IdSchema,
  spec: VmSpecSchema,
  /** Ignored with `sev` (always paused until `resume`). */
  start: z.enum(['running', 'paused']).default('running'),
  sev: SevLaunchParamsSchema.optional(),
});
export type LaunchRequest = z.input<typeof LaunchRequestSchema>;
export const LaunchReplySchema = z.object({
  vm: VmViewSchema,
  /** Present for an SEV launch: LAUNCH_MEASURE and the firmware version it was made by. */
  measurement: z.object({ blob: Base64, platform: SevPlatformVersionSchema }).optional(),
});
export type LaunchReply = z.infer<typeof LaunchReplySchema>;

/** `inject-secret`: deliver a LAUNCH_SECRET packet (header 52 bytes and ciphertext, base64) to a paused SEV VM. */
export const InjectSecretRequestSchema = z.object({
  vmId: IdSchema,
  packetHeader: Base64,
  secret: Base64,
  /** Guest-physical address; the firmware's secret area when omitted. */
  gpa: z.number().int().min(0).optional(),
});

/** `pause`, `resume`, `destroy`: one VM. */
export const VmCommandRequestSchema = z.object({ vmId: IdSchema, reason: z.string().max(500).optional() });
export type VmCommandRequest = z.infer<typeof VmCommandRequestSchema>;

/**
 * `resume`. A VM whose post-copy migration failed past the point of no return (`resumeBlocked`) is
 * refused SOURCE_NOT_RESUMABLE unless `acknowledgeMigration` names that migration: the operator states
 * that the destination's copy is gone (destroyed, or its host down for good) and accepts that the guest
 * goes on from the state it had when that migration switched over; the flag is then cleared.
 */
export const ResumeRequestSchema = VmCommandRequestSchema.extend({
  acknowledgeMigration: IdSchema.optional(),
});
export type ResumeRequest = z.infer<typeof ResumeRequestSchema>;

/** Replies of `inject-secret`, `pause`, `resume`, `destroy`: the VM afterwards. */
export const VmReplySchema = z.object({ vm: VmViewSchema });

/**
 * `prepare-incoming`: start a destination VM with the source's spec, listening for the migration
 * stream on this host's data-plane address. The reply's `uri` goes into `start-migration` on the source.
 * A destination whose stream fails ends (QEMU exits); prepare a new one to retry.
 */
export const PrepareIncomingRequestSchema = z.object({
  vmId: IdSchema,
  spec: VmSpecSchema,
  migrationId: IdSchema.optional(),
  /** The guest's SEV policy when it is an SEV guest (RECEIVE_START checks it). */
  sev: z.object({ policy: z.number().int().min(0).max(0xffffffff) }).optional(),
  /** Enable QEMU `postcopy-ram` on the destination (the source must allow post-copy too). */
  allowPostcopy: z.boolean().optional(),
  /**
   * The source VM's guest address lease (its `describe` view's `guestNet`): the guest keeps its address,
   * so this host records it for the VM (inside its guest network's CIDR, in or out of its range) and
   * hands the guest the same fw_cfg `opt/ccm/vm` blob as the source did. GUEST_ADDRESS_UNAVAILABLE when
   * it cannot. Without it an incoming VM holds no lease here.
   */
  guestNet: GuestLeaseSchema.optional(),
});
export type PrepareIncomingRequest = z.input<typeof PrepareIncomingRequestSchema>;
export const PrepareIncomingReplySchema = z.object({
  /** Same as `vm.vmId`; named as the saga's step context names it. */
  targetVmId: IdSchema,
  uri: z.string(),
  vm: VmViewSchema,
});
export type PrepareIncomingReply = z.infer<typeof PrepareIncomingReplySchema>;

/** Defaults of a migration's convergence settings (the agent's config may change them). */
export const DEFAULT_DOWNTIME_LIMIT_MS = 300;

/** Convergence settings of one migration. */
export const MigrationParamsSchema = z.object({
  /** QEMU `downtime-limit`: the longest stop-and-copy the migration may plan. */
  downtimeLimitMs: z.number().int().min(1).max(600_000),
  /** QEMU `max-bandwidth`. */
  maxBandwidthBytesPerSec: z.number().int().min(1),
  /** QEMU `auto-converge`: throttle the guest's vCPUs when it dirties memory faster than it moves. */
  autoConverge: z.boolean(),
  /** QEMU `pause-before-switchover`: stop in `AwaitingSwitchover` until `continue`. */
  pauseBeforeSwitchover: z.boolean(),
  /** No progress for this long ends the migration with MIGRATION_STALLED. */
  stallTimeoutMs: z.number().int().min(100),
  /** Longest wait in `AwaitingSwitchover` (the guest is paused there) before the agent cancels. */
  switchoverTimeoutMs: z.number().int().min(100),
  /**
   * After completion keep the source guest paused (VM phase `Paused`) instead of ending it, until a
   * `destroy` (the move is verified) or a `resume` (rollback). Not for SEV guests: SEND_FINISH leaves
   * the source context SENT, which the firmware only decommissions, so the source ends as without it.
   */
  holdSource: z.boolean().optional(),
  /**
   * QEMU `postcopy-ram` (the destination must have it too): when pre-copy stalls (the stall rule
   * above), switch to post-copy (`migrate-start-postcopy`) instead of failing. Once the destination
   * runs in post-copy the source can no longer resume: that is the migration's point of no return.
   */
  allowPostcopy: z.boolean().optional(),
});
export type MigrationParams = z.infer<typeof MigrationParamsSchema>;

/**
 * `start-migration`: live-migrate a VM to `uri` (from the destination's `prepare-incoming`). For an SEV
 * guest `sev` is the target's certificate chain: the source firmware's SEND_START verifies it and wraps
 * the transport keys for the target PDH. Unset settings take the agent's configured defaults.
 */
export const StartMigrationRequestSchema = z.object({
  migrationId: IdSchema,
  vmId: IdSchema,
  uri: z.string().regex(/^tcp:[^\s:]+:\d{1,5}$/, 'must be tcp:HOST:PORT'),
  downtimeLimitMs: MigrationParamsSchema.shape.downtimeLimitMs.optional(),
  maxBandwidthBytesPerSec: MigrationParamsSchema.shape.maxBandwidthBytesPerSec.optional(),
  autoConverge: z.boolean().optional(),
  pauseBeforeSwitchover: z.boolean().optional(),
  stallTimeoutMs: MigrationParamsSchema.shape.stallTimeoutMs.optional(),
  switchoverTimeoutMs: MigrationParamsSchema.shape.switchoverTimeoutMs.optional(),
  holdSource: z.boolean().optional(),
  allowPostcopy: z.boolean().optional(),
  sev: SevChainBase64Schema.optional(),
  /** The saga step this migration serves, copied into progress events. */
  step: z.string().min(1).max(100).optional(),
});
export type StartMigrationRequest = z.input<typeof StartMigrationRequestSchema>;

/**
 * Phases of an outgoing migration on its source host:
 */
export const TRANSFER_PHASES = [
  /** Parameters being set and `migrate` sent. */
  'Starting',
  /** Pre-copy passes run. */
  'Active',
  /** Converged; the guest is paused before switch-over, waiting for `continue`. */
  'AwaitingSwitchover',
  /** `continue` sent: the final pages and device state move. */
  'SwitchingOver',
  /** Final: the destination runs the guest; figures are QEMU's, re-read after the end. */
  'Completed',
  /** `cancel` sent, waiting for the hypervisor to confirm. */
  'Cancelling',
  /** Final: cancelled; the source guest runs on. */
  'Cancelled',
  /** Final: failed (stall, destination gone, hypervisor error); the source guest runs on. */
  'Failed',
] as const;
export type TransferPhase = (typeof TRANSFER_PHASES)[number];
const FINAL_TRANSFER: ReadonlySet<string> = new Set(['Completed', 'Cancelled', 'Failed']);
export const isFinalTransferPhase = (phase: string): boolean => FINAL_TRANSFER.has(phase);

/** One progress sample, in plain units. */
export const TransferProgressSchema = z.object({
  status: z.string(),
  ramTransferredBytes: z.number().int().min(0),
  ramRemainingBytes: z.number().int().min(0),
  ramTotalBytes: z.number().int().min(0),
  /** Dirty pages per second (meaningful after the second pass). */
  dirtyPagesRate: z.number().min(0),
  pageSizeBytes: z.number().int().min(1),
  /** Pre-copy passes so far (`dirty-sync-count`). */
  passes: z.number().int().min(0),
  expectedDowntimeMs: z.number().min(0),
  mbps: z.number().min(0),
  /** auto-converge's current vCPU throttle. */
  cpuThrottlePercent: z.number().min(0).max(100),
  elapsedMs: z.number().min(0),
});
export type TransferProgress = z.infer<typeof TransferProgressSchema>;

/** Final figures as the hypervisor reports them after the end (re-read: the first answer can read 0). */
export const TransferFiguresSchema = z.object({
  status: z.string(),
  totalTimeMs: z.number().min(0),
  downtimeMs: z.number().min(0),
  setupTimeMs: z.number().min(0),
  transferredBytes: z.number().int().min(0),
  passes: z.number().int().min(0),
  mbps: z.number().min(0),
});
export type TransferFigures = z.infer<typeof TransferFiguresSchema>;

/**
 * A migration that switched to post-copy: `requestedAt` when pre-copy stalled and the agent sent
 * `migrate-start-postcopy` (the source is still whole: a cancel resumes it); `committedAt` once the
 * destination was let run in post-copy, the point of no return (the source can never resume).
 */
export const TransferPostcopySchema = z.object({
  requestedAt: Iso,
  /** Why pre-copy was given up (the stall rule's finding). */
  reason: z.string(),
  committedAt: Iso.optional(),
});
export type TransferPostcopy = z.infer<typeof TransferPostcopySchema>;

/** An outgoing migration as the source host-agent reports it. */
export const TransferViewSchema = z.object({
  migrationId: IdSchema,
  vmId: IdSchema,
  hostId: IdSchema,
  phase: z.enum(TRANSFER_PHASES),
  uri: z.string(),
  params: MigrationParamsSchema,
  progress: TransferProgressSchema.optional(),
  figures: TransferFiguresSchema.optional(),
  postcopy: TransferPostcopySchema.optional(),
  /** Failures: the error code (HostErrorCodes) and the reason for people. */
  errorCode: z.string().optional(),
  reason: z.string().optional(),
  startedAt: Iso,
  phaseChangedAt: Iso,
  endedAt: Iso.optional(),
});
export type TransferView = z.infer<typeof TransferViewSchema>;

/** `continue` (switch over) and `cancel`: one migration by id. */
export const TransferCommandRequestSchema = z.object({
  migrationId: IdSchema,
  reason: z.string().max(500).optional(),
});
export const TransferReplySchema = z.object({ migration: TransferViewSchema });
export type TransferReply = z.infer<typeof TransferReplySchema>;

/** `describe`: every VM and migration this host knows (or those of one VM). */
export const DescribeRequestSchema = z.object({
  vmId: IdSchema.optional(),
  /** Include VMs and migrations in final phases (default: only live ones and the last 50 ended). */
  all: z.boolean().default(false),
});
export type DescribeRequest = z.input<typeof DescribeRequestSchema>;
export const DescribeReplySchema = z.object({
  hostId: IdSchema,
  vms: z.array(VmViewSchema),
  migrations: z.array(TransferViewSchema),
  /** The QEMU this host runs (qemu driver). */
  hypervisor: HypervisorBinarySchema.optional(),
});
export type DescribeReply = z.infer<typeof DescribeReplySchema>;

/** Each verb's request and reply schema. */
export const HOST_COMMANDS = {
  platform: { request: PlatformRequestSchema, reply: PlatformReplySchema },
  launch: { request: LaunchRequestSchema, reply: LaunchReplySchema },
  'inject-secret': { request: InjectSecretRequestSchema, reply: VmReplySchema },
  'prepare-incoming': { request: PrepareIncomingRequestSchema, reply: PrepareIncomingReplySchema },
  'start-migration': { request: StartMigrationRequestSchema, reply: TransferReplySchema },
  continue: { request: TransferCommandRequestSchema, reply: TransferReplySchema },
  cancel: { request: TransferCommandRequestSchema, reply: TransferReplySchema },
  pause: { request: VmCommandRequestSchema, reply: VmReplySchema },
  resume: { request: ResumeRequestSchema, reply: VmReplySchema },
  destroy: { request: VmCommandRequestSchema, reply: VmReplySchema },
  describe: { request: DescribeRequestSchema, reply: DescribeReplySchema },
} as const satisfies Record<HostVerb, { request: z.ZodType; reply: z.ZodType }>;

// ---- events ----

const HostBase = z.object({ hostId: IdSchema, at: Iso });

/** Every host event by its subject's last token, with its data schema. */
export const HOST_EVENTS = {
  /** The agent (re)started and serves this host: capabilities and, with SEV, the platform chain. */
  registered: HostBase.extend({
    instanceId: z.string(),
    capabilities: HostCapabilitiesSchema,
    sev: PlatformReplySchema.shape.sev,
    /** VMs re-adopted from before a restart, and those found dead. */
    adopted: z.array(IdSchema),
    died: z.array(IdSchema),
  }),
  /** Liveness, every CCM_HEARTBEAT_INTERVAL_MS: what runs here now. */
  heartbeat: HostBase.extend({
    instanceId: z.string(),
    seq: z.number().int().min(1),
    uptimeMs: z.number().min(0),
    vms: z.record(z.string(), z.number().int().min(0)),
    activeMigrations: z.number().int().min(0),
    /** The QEMU this host runs (qemu driver). */
    hypervisor: HypervisorBinarySchema.optional(),
  }),
  /** A VM changed phase. */
  'vm-changed': HostBase.extend({
    vmId: IdSchema,
    phase: z.enum(VM_PHASES),
    previous: z.enum(VM_PHASES).optional(),
    reason: z.string().optional(),
    pid: z.number().int().optional(),
    migrationId: IdSchema.optional(),
  }),
} as const;
export type HostEventName = keyof typeof HOST_EVENTS;
export type HostEventData<N extends HostEventName> = z.infer<(typeof HOST_EVENTS)[N]>;

/** `ccm.evt.host.<hostId>.<name>`. */
export const hostEventSubject = (hostId: string, name: HostEventName): string =>
  subjects.evt(HOST_AGGREGATE, hostId, name);

const TransferBase = z.object({ migrationId: IdSchema, hostId: IdSchema, vmId: IdSchema, at: Iso });

/**
 * Transfer progress: the saga's `DataPlaneProgress` (so the coordinator can forward it as is) plus the
 * hypervisor's own figures.
 */
export const TransferProgressedSchema = DataPlaneProgressSchema.extend({
  hostId: IdSchema,
  vmId: IdSchema,
  phase: z.enum(TRANSFER_PHASES),
  progress: TransferProgressSchema,
});

/** Every transfer event by its subject's last token. */
export const TRANSFER_EVENTS = {
  started: TransferBase.extend({ uri: z.string(), params: MigrationParamsSchema }),
  progressed: TransferProgressedSchema,
  /** Converged and paused before switch-over: send `continue` (or `cancel`). */
  'switchover-reached': TransferBase.extend({ progress: TransferProgressSchema }),
  /** Pre-copy stalled and the migration allows post-copy: `migrate-start-postcopy` was sent. */
  'postcopy-requested': TransferBase.extend({ reason: z.string(), progress: TransferProgressSchema }),
  /** The destination runs in post-copy: past the point of no return, the source cannot resume. */
  'postcopy-committed': TransferBase.extend({ postcopy: TransferPostcopySchema }),
  completed: TransferBase.extend({
    figures: TransferFiguresSchema,
    postcopy: TransferPostcopySchema.optional(),
  }),
  cancelled: TransferBase.extend({ reason: z.string() }),
  failed: TransferBase.extend({
    code: z.string(),
    reason: z.string(),
    progress: TransferProgressSchema.optional(),
  }),
} as const;
export type TransferEventName = keyof typeof TRANSFER_EVENTS;
export type TransferEventData<N extends TransferEventName> = z.infer<(typeof TRANSFER_EVENTS)[N]>;

/** `ccm.evt.transfer.<migrationId>.<name>`. */
export const transferEventSubject = (migrationId: string, name: TransferEventName): string =>
  subjects.evt(TRANSFER_AGGREGATE, migrationId, name);
