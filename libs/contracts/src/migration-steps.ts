import { z } from 'zod';
import { ErrorCodes, type ErrorEffect, type ErrorPayload } from './errors.js';
import { HOST_STEP_COMMANDS } from './host-steps.js';
import { IdSchema } from './migration.js';
import {
  StepCommandSchema,
  StepDoneSchema,
  withContext,
  type StepCommand,
  type StepCommandContract,
} from './step-command.js';
import { SevChainBase64Schema } from './host.js';
import { MoveFiguresSchema } from './overlay.js';

/**
 * The commands the saga-coordinator sends to participants for each saga step, and their replies.
 * Subjects: `ccm.cmd.<service>.<verb>`, or `ccm.cmd.host.<hostId>.<verb>` for host-agent verbs (the
 * host is the migration's source or target, as {@link HOST_COMMAND_ROLE} says). Every command carries
 * the envelope idempotency key `<migrationId>:<step>:<attempt>` (compensations
 * `<migrationId>:<step>:compensate:<attempt>`); a participant acts at most once per (migration, step,
 * kind), also when a retry arrives under a new attempt number after an ambiguous timeout.
 */

/** key-broker `attest-platform`: the target host's platform passed chain, TCB and policy checks. */
export const AttestPlatformReplySchema = z
  .object({
    hostId: IdSchema,
    platform: z.enum(['sev', 'sev-es', 'sev-snp']),
    /** Id of the attestation record in the key-broker's log. */
    attestationId: z.string().min(1).max(200),
  })
  .loose();

/** vm-lifecycle `provision-vm` and host-agent `prepare-incoming`: the VM now on the target host. */
/**
 * vm-lifecycle `provision-vm`: the target VM, and for a container the source VM that runs it (both go
 * into the saga's context for later steps).
 */
export const TargetVmReplySchema = z
  .object({ targetVmId: IdSchema, sourceVmId: IdSchema.optional() })
  .loose();

/** key-broker `release-migration-key`: which key was released (never the key itself). */
export const KeyReleasedReplySchema = z.object({ keyId: z.string().min(1).max(200) }).loose();

/** network-overlay `add-peer`: the target guest is a peer; the workload keeps `overlayIp`. */
export const PeerAddedReplySchema = z
  .object({ peerId: z.string().min(1).max(200), overlayIp: z.string().max(64) })
  .loose();

/** container-checkpoint `pre-copy`: iterative pre-dumps streamed until the dirty set converged. */
export const PreCopyReplySchema = z
  .object({ rounds: z.number().int().min(0), bytesSent: z.number().int().min(0), converged: z.boolean() })
  .loose();

/** container-checkpoint `freeze-dump`: the final image, written while the source is frozen. */
export const FreezeDumpReplySchema = z.object({ imageBytes: z.number().int().min(0) }).loose();

/**
 * network-overlay `cut-over`: the /32 points at the target on every peer; the move's figures
 * (brownout of the /32 beside the checkpoint's blackout, which container-checkpoint reports).
 */
export const CutOverReplySchema = MoveFiguresSchema.extend({ overlayIp: z.string().max(64) }).loose();

/** network-overlay `probe-workload` (the coordinator's `verify` step): the workload answered. */
export const ProbeWorkloadReplySchema = z
  .object({
    answered: z.literal(true),
    latencyMs: z.number().min(0),
    from: z.string().max(100).optional(),
    /** `peer`: from a peer other than the holder; `holder`: the overlay has no other peer to ask. */
    via: z.enum(['peer', 'holder']).optional(),
  })
  .loose();

/**
 * key-broker `open-transport-session`: the target chain released for SEND_START, only after the target
 * platform was attested for this migration and its chain still verifies under the owner's policy.
 */
export const TransportSessionReplySchema = z
  .object({
    transportSessionId: IdSchema,
    targetChain: SevChainBase64Schema,
    /** SHA-256 of the target PDH certificate the session is for. */
    pdhSha256: z.string().regex(/^[0-9a-f]{64}$/),
    attestationId: z.string().min(1).max(200),
  })
  .loose();

const c = (request: z.ZodType<StepCommand>, reply: z.ZodType = StepDoneSchema): StepCommandContract => ({
  request,
  reply,
});
const any = StepCommandSchema;

/**
 * Every step command by participant and verb (`host-agent` verbs travel on the host subjects). The
 * coordinator validates what it sends with `request` and what it gets back with `reply`.
 */
export const STEP_COMMANDS = {
  'key-broker': {
    'attest-platform': c(any, AttestPlatformReplySchema),
    'release-migration-key': c(withContext('targetVmId'), KeyReleasedReplySchema),
    'revoke-migration-key': c(any),
    'open-transport-session': c(any, TransportSessionReplySchema),
    'close-transport-session': c(any),
    'rotate-keys': c(any),
  },
  'vm-lifecycle': {
    'provision-vm': c(any, TargetVmReplySchema),
    'destroy-vm': c(any),
  },
  'network-overlay': {
    'add-peer': c(withContext('targetVmId'), PeerAddedReplySchema),
    'remove-peer': c(any),
    'cut-over': c(withContext('targetVmId'), CutOverReplySchema),
    'revert-cut-over': c(any),
    'probe-workload': c(any, ProbeWorkloadReplySchema),
  },
  'container-checkpoint': {
    'pre-copy': c(withContext('targetVmId'), PreCopyReplySchema),
    'discard-images': c(any),
    'freeze-dump': c(withContext('targetVmId'), FreezeDumpReplySchema),
    'thaw-source': c(any),
    restore: c(withContext('targetVmId')),
    'kill-target': c(any),
    commit: c(any),
  },
  /** Served by the host-agent itself on `ccm.cmd.host.<hostId>.step.<verb>` (libs/contracts host-steps). */
  'host-agent': HOST_STEP_COMMANDS,
} as const satisfies Record<string, Record<string, StepCommandContract>>;

export type StepParticipant = keyof typeof STEP_COMMANDS;

/** The contract of `participant`'s `verb`, or undefined when no such step command exists. */
export function stepCommandContract(participant: string, verb: string): StepCommandContract | undefined {
  const verbs = (STEP_COMMANDS as Record<string, Record<string, StepCommandContract>>)[participant];
  return verbs?.[verb];
}

/**
 * Whether a failed step command may have changed anything. A participant states it in the error's
 * `effect` (`'none'`: it knows it did nothing, no compensation needed; `'maybe'`). Without a
 * statement, refusals made before any handler ran (validation, signature, authorization) count as
 * `'none'` and everything else as `'maybe'`.
 */
export function stepFailureEffect(error: ErrorPayload): ErrorEffect {
  return error.effect ?? (NO_EFFECT_CODES.has(error.code) ? 'none' : 'maybe');
}

const NO_EFFECT_CODES: ReadonlySet<string> = new Set([
  ErrorCodes.ValidationFailed,
  ErrorCodes.MalformedMessage,
  ErrorCodes.SignatureMissing,
  ErrorCodes.SignatureInvalid,
  ErrorCodes.UnknownSigner,
  ErrorCodes.Unauthorized,
]);
