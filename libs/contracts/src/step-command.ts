import { z } from 'zod';
import { GuestLeaseSchema, SevChainBase64Schema, VmSpecSchema } from './host.js';
import { IdSchema, WORKLOAD_KINDS } from './migration.js';
import { SignedAdmissionSchema } from './overlay.js';

/**
 * What every saga step command carries, and the context later steps inherit from earlier replies.
 * Participants' own step contracts (`STEP_COMMANDS`, `HOST_STEP_COMMANDS`) build on these.
 */

/**
 * What earlier steps learned that later ones need. A reply field with one of these names is carried
 * into the `context` of every later command of the same migration (absent until a step supplies it,
 * and possibly absent in a compensation that follows an ambiguous timeout: find by migration id then).
 */
export const StepContextSchema = z.object({
  /** The VM on the target host: the provisioned confidential VM, or the incoming VM of a VM migration. */
  targetVmId: IdSchema.optional(),
  /**
   * Container saga: the confidential VM the container runs in on the source host (its guest-agent is
   * `ccm.cmd.guest.<sourceVmId>.>`); the coordinator's `admit` carries it from the request's `sourceVm`.
   * The key-broker asks this guest for evidence and container-checkpoint drives its guest-agent.
   */
  sourceVmId: IdSchema.optional(),
  /** The workload's overlay address (it keeps it across the move). */
  overlayIp: z.string().max(64).optional(),
  /** The key-broker's SEV transport session of a VM migration. */
  transportSessionId: IdSchema.optional(),
  /**
   * VM saga: the spec the VM runs with on the source host, read from the source host-agent when the
   * coordinator admits the migration; the destination is started with it.
   */
  vmSpec: VmSpecSchema.optional(),
  /** VM saga: the guest's SEV policy when it is an SEV guest (read with `vmSpec`). */
  sevPolicy: z.number().int().min(0).max(0xffffffff).optional(),
  /**
   * VM saga: the guest's address lease on the source host's guest network (read with `vmSpec`); the
   * target's `prepare-incoming` keeps it for the guest, which keeps its address.
   */
  guestNet: GuestLeaseSchema.optional(),
  /** VM saga: where the target's incoming VM listens (`tcp:HOST:PORT`), from `prepare-incoming`. */
  incomingUri: z.string().max(300).optional(),
  /**
   * VM saga, SEV guests: the target platform's chain the key-broker verified (from its
   * `attest-platform` or `open-transport-session` reply); the source firmware's SEND_START takes it.
   */
  targetChain: SevChainBase64Schema.optional(),
  /**
   * The key-broker's signed statement that the target guest's WireGuard key is bound in evidence it
   * verified (`release-migration-key` returns it; `add-peer` needs it unless the guest is a peer
   * already). The overlay checks the signature itself: the coordinator only carries it.
   */
  overlayAdmission: SignedAdmissionSchema.optional(),
  /** VM saga: the request's `allowPostcopy`, carried by the coordinator's `admit`. */
  allowPostcopy: z.boolean().optional(),
});
export type StepContext = z.infer<typeof StepContextSchema>;
export const STEP_CONTEXT_KEYS = [
  'targetVmId',
  'sourceVmId',
  'overlayIp',
  'transportSessionId',
  'vmSpec',
  'sevPolicy',
  'guestNet',
  'incomingUri',
  'targetChain',
  'overlayAdmission',
  'allowPostcopy',
] as const satisfies ReadonlyArray<keyof StepContext>;

/** Fields every step command has. Participants must accept (and ignore) fields they do not know. */
export const StepCommandSchema = z.object({
  migrationId: IdSchema,
  /** `name@version` of the saga definition. */
  saga: z.string().min(1).max(100),
  step: z.string().min(1).max(100),
  kind: z.enum(['action', 'compensation']),
  attempt: z.number().int().min(1),
  workload: z.object({ id: IdSchema, kind: z.enum(WORKLOAD_KINDS) }),
  sourceHost: IdSchema,
  targetHost: IdSchema,
  context: StepContextSchema,
});
export type StepCommand = z.infer<typeof StepCommandSchema>;

/** A command that needs some context keys: the coordinator refuses to send it without them. */
export const withContext = (...keys: Array<keyof StepContext>): z.ZodType<StepCommand> =>
  StepCommandSchema.extend({
    context: StepContextSchema.required(
      Object.fromEntries(keys.map((k) => [k, true])) as Partial<Record<keyof StepContext, true>>,
    ),
  });

/** A reply with nothing to report beyond success; participants may add fields. */
export const StepDoneSchema = z.object({}).loose();

/**
 * A success reply may say that the saga's next step, once sent, cannot be undone (e.g. a VM migration
 * that switched to post-copy: letting the destination run splits the guest between the hosts; or an
 * SEV guest's: SEND_FINISH at switch-over leaves the source's guest context SENT). The
 * coordinator hands it to the saga engine, which moves its point of no return to that step.
 */
export const COMMITS_NEXT_STEP = 'commitsNextStep';
export const CommitsNextStepSchema = z.string().min(1).max(500);

/** The request and reply schema of one command. */
export interface StepCommandContract {
  readonly request: z.ZodType<StepCommand>;
  readonly reply: z.ZodType;
}
