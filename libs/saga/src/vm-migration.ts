import { defineSaga } from './define-saga.js';
import { Participant, type SagaDefinition, StepClass } from './definition.js';
import { BLACKOUT_RETRY, TRANSFER_RETRY } from './defaults.js';
import { admitStep, attestTargetStep, rotateStep, verifyStep } from './shared-steps.js';

/** Step names of the VM migration saga (ARCHITECTURE §5, last paragraph), in order. */
export const VmStep = {
  Admit: 'admit',
  AttestTarget: 'attest-target',
  TransportSession: 'transport-session',
  PrepareIncoming: 'prepare-incoming',
  StartMigration: 'start-migration',
  Converge: 'converge',
  SwitchOver: 'switch-over',
  Verify: 'verify',
  DestroySource: 'destroy-source',
  Rotate: 'rotate',
} as const;

/** How long each VM-migration step's action may take before it counts as timed out. */
export const VM_STEP_TIMEOUT_MS = Object.freeze({
  admit: 10_000,
  'attest-target': 30_000,
  'transport-session': 30_000,
  'prepare-incoming': 300_000,
  'start-migration': 30_000,
  converge: 3_600_000,
  'switch-over': 60_000,
  verify: 10_000,
  'destroy-source': 120_000,
  rotate: 60_000,
} satisfies Record<(typeof VmStep)[keyof typeof VmStep], number>);

const T = VM_STEP_TIMEOUT_MS;
const { KeyBroker, VmLifecycle, HostAgent, NetworkOverlay } = Participant;

/**
 * The VM migration saga: the hypervisor moves the whole confidential VM (SEV SEND_* and RECEIVE_* commands).
 *
 * **Pivot: `verify`**: the target host-agent watches the destination guest make progress. The source
 * host-agent keeps the source guest paused after switch-over (not ended) until `destroy-source`, so a
 * failed verify still rolls everything back: `switch-back` stops the destination (target host), then
 * `cancel-migration` resumes the paused source (source host), then `destroy-incoming` removes the
 * destination. `destroy-source` is irreversible and is retried until done after the pivot.
 *
 * **Moved to `switch-over`** when the converge reply carries `commitsNextStep`: the migration switched to
 * post-copy, or the guest is an SEV guest (SEV or SEV-ES), whose source context SEND_FINISH leaves SENT
 * (no firmware command leads from SENT back to RUNNING). A cancel is refused once `switch-over` was sent, and a failure
 * from then ends `NeedsOperator` with nothing rolled back.
 */
export const VM_MIGRATION: SagaDefinition = defineSaga({
  name: 'vm-migration',
  version: 1,
  steps: [
    admitStep('VM', T.admit),
    attestTargetStep(T['attest-target']),
    {
      name: VmStep.TransportSession,
      class: StepClass.Compensable,
      description: 'open the SEV transport session: TEK/TIK wrapped under KEK/KIK from the target PDH',
      participant: KeyBroker,
      action: 'open-transport-session',
      timeoutMs: T['transport-session'],
      compensation: { command: 'close-transport-session' },
    },
    {
      name: VmStep.PrepareIncoming,
      class: StepClass.Compensable,
      description: 'start the incoming VM on the target host, waiting for the stream',
      participant: HostAgent,
      collaborators: [VmLifecycle],
      action: 'prepare-incoming',
      timeoutMs: T['prepare-incoming'],
      compensation: { command: 'destroy-incoming' },
    },
    {
      name: VmStep.StartMigration,
      class: StepClass.Compensable,
      description: 'start the migration on the source with pause-before-switchover',
      participant: HostAgent,
      action: 'start-migration',
      timeoutMs: T['start-migration'],
      compensation: { command: 'cancel-migration' },
    },
    {
      name: VmStep.Converge,
      class: StepClass.Compensable,
      description: 'wait for convergence within the downtime budget (auto-converge, stall detection)',
      participant: HostAgent,
      action: 'await-convergence',
      timeoutMs: T.converge,
      retry: TRANSFER_RETRY,
      interruptible: true, // a cancel stops the transfer through cancel-migration at once
    },
    {
      name: VmStep.SwitchOver,
      class: StepClass.Compensable,
      description:
        'in the pause, move the overlay address to the target, then let the target run; the source stays paused',
      participant: HostAgent,
      collaborators: [NetworkOverlay],
      action: 'switch-over',
      timeoutMs: T['switch-over'],
      retry: BLACKOUT_RETRY,
      compensation: { command: 'switch-back' }, // stops the destination, so the source may resume
    },
    verifyStep(T.verify),
    {
      name: VmStep.DestroySource,
      class: StepClass.Retriable,
      description: 'destroy the source VM and scrub its placement',
      participant: HostAgent,
      collaborators: [VmLifecycle],
      action: 'destroy-vm',
      timeoutMs: T['destroy-source'],
    },
    rotateStep('revoke transport and source-placement secrets, rotate overlay keys', T.rotate),
  ],
});
