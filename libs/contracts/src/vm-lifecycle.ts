import { z } from 'zod';
import {
  HostCapabilitiesSchema,
  SEV_MODES,
  SevPlatformVersionSchema,
  VM_PHASES,
  VmSpecSchema,
} from './host.js';
import { IdSchema } from './migration.js';
import { subjects } from './subjects.js';

/**
 * The vm-lifecycle's own queries (`ccm.cmd.vm-lifecycle.<verb>`), besides the saga step verbs of
 * STEP_COMMANDS: the registry of hosts (fed by the host-agents' `ccm.evt.host.<id>.*` events) and of
 * confidential VMs, and placement. The same schemas validate HTTP (`GET /hosts`, `/vms`, `/vms/:id`);
 * numbers are coerced so query strings parse too.
 */
export const VM_LIFECYCLE_VERBS = {
  listHosts: 'list-hosts',
  listVms: 'list-vms',
  getVm: 'get-vm',
  place: 'place',
  /** Operator: an attested launch of a workload's first confidential VM on a named host. */
  launchVm: 'launch-vm',
} as const;
export type VmLifecycleVerb = (typeof VM_LIFECYCLE_VERBS)[keyof typeof VM_LIFECYCLE_VERBS];

export const vmLifecycleSubject = (verb: VmLifecycleVerb): string => subjects.cmd('vm-lifecycle', verb);

/** Error codes of vm-lifecycle replies beyond the common ones. */
export const VmLifecycleErrorCodes = {
  /** No host passed placement; details.rejected names every host and why it was rejected. */
  PlacementRefused: 'PLACEMENT_REFUSED',
} as const;

const Iso = z.iso.datetime({ offset: true });

/** Why placement rejected a host (one host may fail several). */
export const PLACEMENT_REJECTIONS = [
  /** No heartbeat within the liveness timeout. */
  'not-live',
  /** The VM's current host (anti-affinity). */
  'source-host',
  /** Not among the candidates the request allowed. */
  'not-a-candidate',
  /** No SEV at all (neither firmware nor emulator). */
  'no-sev',
  /** SEV-SNP was required and the host has none. */
  'no-snp',
  /** The host's platform TCB (SEV firmware version) is below the source host's. */
  'tcb-below-source',
  /** Not enough memory left for the VM. */
  'memory',
  /** Not enough vCPUs left for the VM. */
  'cpus',
] as const;
export type PlacementRejection = (typeof PLACEMENT_REJECTIONS)[number];

export const RejectedHostSchema = z.object({
  hostId: IdSchema,
  reasons: z.array(z.object({ code: z.enum(PLACEMENT_REJECTIONS), detail: z.string() })).min(1),
});
export type RejectedHost = z.infer<typeof RejectedHostSchema>;

/** A host as the registry knows it. `tcb` is its SEV firmware version (PLATFORM_STATUS). */
export const HostRecordSchema = z.object({
  hostId: IdSchema,
  instanceId: z.string(),
  /** A heartbeat (or the registration) within the configured liveness timeout. */
  live: z.boolean(),
  registeredAt: Iso,
  lastSeenAt: Iso,
  capabilities: HostCapabilitiesSchema,
  sevMode: z.enum(SEV_MODES),
  tcb: SevPlatformVersionSchema.optional(),
  /** SHA-256 (hex) of the platform's PDH certificate, when it has SEV. */
  pdhSha256: z.string().optional(),
  /** VMs by phase and running migrations, from the last heartbeat. */
  vms: z.record(z.string(), z.number().int().min(0)),
  activeMigrations: z.number().int().min(0),
  /** Memory and vCPUs taken by the VMs the registry knows there (with a known spec) that have not ended. */
  allocatedMemoryMiB: z.number().int().min(0),
  allocatedCpus: z.number().int().min(0),
});
export type HostRecord = z.infer<typeof HostRecordSchema>;

export const ListHostsRequestSchema = z.strictObject({});
export const ListHostsReplySchema = z.object({
  hosts: z.array(HostRecordSchema),
  livenessTimeoutMs: z.number(),
});
export type ListHostsReply = z.infer<typeof ListHostsReplySchema>;

/** What the registry wants of a VM, beside what the host-agent last reported. */
export const VM_DESIRED = ['Running', 'Destroyed'] as const;

/** One confidential VM on one host (a migrated VM id has a record on each host it was on). */
export const VmRecordSchema = z.object({
  vmId: IdSchema,
  hostId: IdSchema,
  desired: z.enum(VM_DESIRED).optional(),
  /** The phase the host-agent last reported; absent until it reported one. */
  observed: z.enum(VM_PHASES).optional(),
  reason: z.string().optional(),
  spec: VmSpecSchema.optional(),
  /** Workloads (containers) this VM runs or was provisioned for. */
  workloads: z.array(IdSchema),
  /** The migration whose `provision-vm` launched it. */
  provisionedBy: IdSchema.optional(),
  /** An attested launch: the key-broker's session and the launch digest it accepted. */
  launch: z.object({ launchSessionId: z.string(), launchDigest: z.string() }).optional(),
  phaseHistory: z.array(z.object({ phase: z.string(), at: Iso, reason: z.string().optional() })),
  createdAt: Iso,
  updatedAt: Iso,
});
export type VmRecord = z.infer<typeof VmRecordSchema>;

export const ListVmsRequestSchema = z.strictObject({
  host: IdSchema.optional(),
  phase: z.enum(VM_PHASES).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});
export type ListVmsRequest = z.input<typeof ListVmsRequestSchema>;
export const ListVmsReplySchema = z.object({ vms: z.array(VmRecordSchema) });
export type ListVmsReply = z.infer<typeof ListVmsReplySchema>;

/** One VM; with several records (a VM that moved) the one not ended, else the newest. */
export const GetVmRequestSchema = z.strictObject({ vmId: IdSchema, host: IdSchema.optional() });
export type GetVmRequest = z.input<typeof GetVmRequestSchema>;
export const GetVmReplySchema = VmRecordSchema;

/**
 * `place`: pick a host for a VM of `memoryMiB`/`cpus`. `sourceHost` is excluded (anti-affinity) and
 * sets the TCB floor; `candidates` restricts the choice.
 */
export const PlaceRequestSchema = z.strictObject({
  memoryMiB: z.coerce
    .number()
    .int()
    .min(1)
    .max(1 << 20),
  cpus: z.coerce.number().int().min(1).max(64).default(1),
  sourceHost: IdSchema.optional(),
  candidates: z.array(IdSchema).min(1).max(1000).optional(),
  requireSnp: z.boolean().default(false),
});
export type PlaceRequest = z.input<typeof PlaceRequestSchema>;
export const PlaceReplySchema = z.object({ hostId: IdSchema, rejected: z.array(RejectedHostSchema) });
export type PlaceReply = z.infer<typeof PlaceReplySchema>;

/**
 * `launch-vm` (operator only, idempotent by `vmId`): the named host passes placement, then the same
 * attested launch `provision-vm` runs (key-broker session, measured launch, secret, resume), the
 * guest-agent answers, and the registry records the VM wanted `Running` with its workloads. `spec`
 * defaults to CCM's container guest (CCM_CONTAINER_VM_SPEC). With `overlayId` the key-broker judges the
 * guest's fresh evidence (`admit-guest`) and the new guest is admitted to that overlay with the
 * broker's signed statement.
 */
export const LaunchVmRequestSchema = z.strictObject({
  vmId: IdSchema.optional(),
  host: IdSchema,
  workloads: z.array(IdSchema).min(1).max(100),
  spec: VmSpecSchema.optional(),
  overlayId: IdSchema.optional(),
});
export type LaunchVmRequest = z.input<typeof LaunchVmRequestSchema>;
export const LaunchVmReplySchema = z.object({
  vmId: IdSchema,
  hostId: IdSchema,
  launchSessionId: z.string(),
  launchDigest: z.string().optional(),
  /** With `overlayId`: the overlay, the guest's node address there and the release log seq of its admission. */
  overlay: z.object({ overlayId: IdSchema, nodeIp: z.string(), decision: z.number().int() }).optional(),
});
export type LaunchVmReply = z.infer<typeof LaunchVmReplySchema>;

/** Each query verb's request and reply schema. */
export const VM_LIFECYCLE_QUERIES = {
  'list-hosts': { request: ListHostsRequestSchema, reply: ListHostsReplySchema },
  'list-vms': { request: ListVmsRequestSchema, reply: ListVmsReplySchema },
  'get-vm': { request: GetVmRequestSchema, reply: GetVmReplySchema },
  place: { request: PlaceRequestSchema, reply: PlaceReplySchema },
  'launch-vm': { request: LaunchVmRequestSchema, reply: LaunchVmReplySchema },
} as const satisfies Record<VmLifecycleVerb, { request: z.ZodType; reply: z.ZodType }>;
