import { Participant, type StepSpec, StepClass } from './definition.js';
import { VERIFY_RETRY } from './defaults.js';

/**
 * Steps the container and VM migration sagas share: same participant, verbs and compensation, only
 * the workload noun and the timeout differ.
 */

/** Step 1: validate, apply concurrency limits, lock the workload; undone by releasing the lock. */
export function admitStep(workload: string, timeoutMs: number): StepSpec {
  return {
    name: 'admit',
    class: StepClass.Compensable,
    description: `validate, apply per-host and global concurrency limits, lock the ${workload}`,
    participant: Participant.Coordinator,
    action: 'admit',
    timeoutMs,
    compensation: { command: 'release-admission' },
  };
}

/** Step 2: the key-broker attests the target platform; a check, so nothing to undo. */
export function attestTargetStep(timeoutMs: number): StepSpec {
  return {
    name: 'attest-target',
    class: StepClass.Compensable,
    description: 'verify the target platform chain, TCB and policy (NOSEND forbids migration)',
    participant: Participant.KeyBroker,
    action: 'attest-platform',
    timeoutMs,
  };
}

/** The pivot of both sagas: the workload answers at its overlay IP. See the saga TSDoc for why. */
export function verifyStep(timeoutMs: number): StepSpec {
  return {
    name: 'verify',
    class: StepClass.Pivot,
    description: 'the workload answers at its overlay IP (point of no return once it succeeds)',
    participant: Participant.Coordinator,
    action: 'verify-workload',
    timeoutMs,
    retry: VERIFY_RETRY,
  };
}

/** The last step of both sagas: revoke and rotate keys after the move; retried until done. */
export function rotateStep(description: string, timeoutMs: number): StepSpec {
  return {
    name: 'rotate',
    class: StepClass.Retriable,
    description,
    participant: Participant.KeyBroker,
    collaborators: [Participant.NetworkOverlay],
    action: 'rotate-keys',
    timeoutMs,
  };
}
