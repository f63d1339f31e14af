import { z } from 'zod';
import { TransferFiguresSchema } from './host.js';
import { IdSchema } from './migration.js';
import {
  CommitsNextStepSchema,
  StepCommandSchema,
  StepDoneSchema,
  withContext,
  type StepCommandContract,
} from './step-command.js';

/**
 * The host-agent's saga step commands: what the VM migration saga asks of the source and target
 * host-agents, served by the host-agent itself (its step handler maps each onto its VM and transfer
 * services). Subject `ccm.cmd.host.<hostId>.step.<verb>` (`subjects.hostStep`), apart from the
 * operator's verbs (`HOST_COMMANDS`), whose payloads are not step commands. Every request is a
 * `StepCommand`; what the host-agent needs comes from the saga's context:
 * - `vmSpec`/`sevPolicy`: read from the source host-agent (`describe`) when the coordinator admits
 *   the migration;
 * - `incomingUri`, `targetVmId`: the target's `prepare-incoming` reply;
 * - `targetChain`: the target platform chain the key-broker verified (its attest or transport-session
 *   reply), needed by `start-migration` for an SEV guest.
 * The VM migrated is the workload id, on both hosts.
 */

/** `prepare-incoming` (target): the incoming VM, waiting for the stream at `incomingUri`. */
export const IncomingPreparedReplySchema = z
  .object({ targetVmId: IdSchema, incomingUri: z.string().regex(/^tcp:[^\s:]+:\d{1,5}$/) })
  .loose();

/** The SEV mode of a guest the host-agent migrates, from its 32-bit guest policy (bit ES). */
export const VM_SEV_MODES = ['sev', 'sev-es'] as const;
export type VmSevMode = (typeof VM_SEV_MODES)[number];

/**
 * `await-convergence` (source): the migration reached pause-before-switchover within budget, or (when
 * the request allowed it) pre-copy stalled and the migration switched to post-copy, paused before
 * the destination runs: `postcopy` is true and `commitsNextStep` says `switch-over` cannot be undone.
 * An SEV guest's reply names its `sevMode` and carries `commitsNextStep` too: switch-over ends with
 * SEND_FINISH, which leaves the source's guest context SENT, so the source can never resume after it.
 */
export const ConvergedReplySchema = z
  .object({
    expectedDowntimeMs: z.number().min(0),
    bytesTransferred: z.number().int().min(0),
    postcopy: z.boolean().optional(),
    sevMode: z.enum(VM_SEV_MODES).optional(),
    commitsNextStep: CommitsNextStepSchema.optional(),
  })
  .loose();
export type ConvergedReply = z.infer<typeof ConvergedReplySchema>;

/** `switch-over` (source): the migration completed; the source guest is held paused until verified. */
export const SwitchedOverReplySchema = z
  .object({ figures: TransferFiguresSchema, sourceHeld: z.boolean() })
  .loose();

/** `verify-vm` (target): the destination guest runs and its workload made progress. */
export const VmAliveReplySchema = z
  .object({
    alive: z.literal(true),
    /** The workload's progress seen: the guest's console counter before and after. */
    counterFrom: z.number().int().min(0),
    counterTo: z.number().int().min(0),
    waitedMs: z.number().min(0),
  })
  .loose();

const any = StepCommandSchema;
const c = (request: z.ZodType = any, reply: z.ZodType = StepDoneSchema): StepCommandContract => ({
  request: request as StepCommandContract['request'],
  reply,
});

/** Every host-agent step command, by verb. */
export const HOST_STEP_COMMANDS = {
  'prepare-incoming': c(withContext('transportSessionId', 'vmSpec'), IncomingPreparedReplySchema),
  'destroy-incoming': c(),
  'start-migration': c(withContext('transportSessionId', 'targetVmId', 'incomingUri')),
  'cancel-migration': c(),
  'await-convergence': c(any, ConvergedReplySchema),
  'switch-over': c(any, SwitchedOverReplySchema),
  'switch-back': c(),
  'verify-vm': c(withContext('targetVmId'), VmAliveReplySchema),
  'destroy-vm': c(),
} as const satisfies Record<string, StepCommandContract>;
export type HostStepVerb = keyof typeof HOST_STEP_COMMANDS;

/**
 * Which host a host-agent step verb goes to. The rollback after switch-over stops the destination
 * first (`switch-back`, target) and only then resumes the held source (`cancel-migration`, source), so
 * the guest never runs on both hosts.
 */
export const HOST_COMMAND_ROLE: Readonly<Record<HostStepVerb, 'source' | 'target'>> = Object.freeze({
  'prepare-incoming': 'target',
  'destroy-incoming': 'target',
  'start-migration': 'source',
  'cancel-migration': 'source',
  'await-convergence': 'source',
  'switch-over': 'source',
  'switch-back': 'target',
  'verify-vm': 'target',
  'destroy-vm': 'source',
});
