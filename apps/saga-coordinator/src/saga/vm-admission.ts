import {
  CcmError,
  DescribeReplySchema,
  ErrorCodes,
  isFinalVmPhase,
  subjects,
  type StepContext,
} from '@ccm/contracts';
import { type MessageBus } from '@ccm/messaging';
import { type SagaRow } from './store.js';

/**
 * What the coordinator learns about a VM at admission: the spec it runs with, its SEV policy and its
 * guest address lease, from the source host-agent that runs it. They go into the saga's context
 * (`vmSpec`, `sevPolicy`, `guestNet`), so the target's `prepare-incoming` starts the destination with
 * exactly the source's spec and keeps the guest's address.
 *
 * @throws CcmError NOT_FOUND (effect none) when the source host has no such VM alive, CONFLICT when
 * it is not running or paused: nothing was done and nothing needs undoing.
 */
export async function readSourceVm(
  bus: MessageBus,
  row: SagaRow,
  timeoutMs: number,
): Promise<Pick<StepContext, 'vmSpec' | 'sevPolicy' | 'guestNet'>> {
  const reply = await bus.request(
    subjects.hostCmd(row.sourceHost, 'describe'),
    { vmId: row.workloadId },
    DescribeReplySchema,
    { timeoutMs, correlationId: row.id },
  );
  const vm = reply.vms.find((v) => v.vmId === row.workloadId && !isFinalVmPhase(v.phase));
  if (!vm) {
    throw new CcmError(
      ErrorCodes.NotFound,
      `host ${row.sourceHost} runs no VM ${row.workloadId}: nothing to migrate`,
      { retryable: false, effect: 'none' },
    );
  }
  if (vm.phase !== 'Running' && vm.phase !== 'Paused') {
    throw new CcmError(
      ErrorCodes.Conflict,
      `VM ${row.workloadId} on ${row.sourceHost} is ${vm.phase}: only a running or paused VM migrates`,
      { retryable: false, effect: 'none' },
    );
  }
  return {
    vmSpec: vm.spec,
    ...(vm.sev ? { sevPolicy: vm.sev.policy } : {}),
    ...(vm.guestNet ? { guestNet: vm.guestNet } : {}),
  };
}
