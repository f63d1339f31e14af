import {
  CcmError,
  ErrorCodes,
  HOST_COMMAND_ROLE,
  STEP_CONTEXT_KEYS,
  stepCommandContract,
  subjects,
  validationError,
  type ServiceName,
  type StepCommand,
  type StepCommandContract,
  type StepContext,
} from '@ccm/contracts';
import {
  AttemptStatus,
  CommandKind,
  type SagaState,
  type SendAction,
  type SendCompensation,
} from '@ccm/saga';
import { type SagaRow } from './store.js';

/** A step command ready to send: where, what, and the contract its reply must meet. */
export interface OutgoingCommand {
  readonly participant: string;
  readonly verb: string;
  readonly subject: string;
  readonly payload: StepCommand;
  readonly contract: StepCommandContract;
}

/**
 * What earlier steps of this saga learned (see `StepContextSchema`): every context key found in the
 * result of a succeeded action, later steps overriding earlier ones.
 */
export function stepContext(state: SagaState): StepContext {
  const ctx: Record<string, unknown> = {};
  for (const step of state.steps) {
    for (const a of step.actions) {
      if (a.status !== AttemptStatus.Succeeded || !a.result || typeof a.result !== 'object') continue;
      const result = a.result as Record<string, unknown>;
      for (const key of STEP_CONTEXT_KEYS) if (result[key] !== undefined) ctx[key] = result[key];
    }
  }
  return ctx;
}

/**
 * The subject of `verb` for `participant`. Host-agent verbs go to the migration's source or target
 * host as `HOST_COMMAND_ROLE` says (`ccm.cmd.host.<hostId>.step.<verb>`); every other participant is a
 * service with a queue group (`ccm.cmd.<service>.<verb>`).
 */
export function subjectFor(row: SagaRow, participant: string, verb: string): string {
  if (participant === 'host-agent') {
    const role = HOST_COMMAND_ROLE[verb as keyof typeof HOST_COMMAND_ROLE];
    if (!role) throw new CcmError(ErrorCodes.Internal, `no host role for host-agent verb ${verb}`);
    return subjects.hostStep(role === 'source' ? row.sourceHost : row.targetHost, verb);
  }
  return subjects.cmd(participant as ServiceName, verb);
}

/**
 * Builds and validates the command of a send decision, addressed to `participant`'s `verb` (by
 * default the decision's own). @throws CcmError VALIDATION_FAILED when the saga lacks what the
 * contract requires (e.g. a target VM id no earlier step supplied).
 */
export function buildCommand(
  row: SagaRow,
  state: SagaState,
  d: SendAction | SendCompensation,
  target: { participant: string; verb: string } = { participant: d.participant, verb: d.command },
): OutgoingCommand {
  const contract = stepCommandContract(target.participant, target.verb);
  if (!contract) {
    throw new CcmError(ErrorCodes.Internal, `no contract for ${target.participant} ${target.verb}`, {
      retryable: false,
    });
  }
  const payload = {
    migrationId: row.id,
    saga: state.saga,
    step: d.step,
    kind: d.type === 'SendAction' ? CommandKind.Action : CommandKind.Compensation,
    attempt: d.attempt,
    workload: { id: row.workloadId, kind: row.kind },
    sourceHost: row.sourceHost,
    targetHost: row.targetHost,
    context: stepContext(state),
  };
  const checked = contract.request.safeParse(payload);
  if (!checked.success) {
    throw validationError(
      `${target.participant} ${target.verb} command for step ${d.step}`,
      checked.error.issues,
    );
  }
  return {
    participant: target.participant,
    verb: target.verb,
    subject: subjectFor(row, target.participant, target.verb),
    payload: checked.data,
    contract,
  };
}
