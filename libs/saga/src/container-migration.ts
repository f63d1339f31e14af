import { defineSaga } from './define-saga.js';
import { Participant, type SagaDefinition, StepClass } from './definition.js';
import { BLACKOUT_RETRY, TRANSFER_RETRY } from './defaults.js';
import { admitStep, attestTargetStep, rotateStep, verifyStep } from './shared-steps.js';

/** Step names of the container migration saga (ARCHITECTURE §5), in order. */
export const ContainerStep = {
  Admit: 'admit',
  AttestTarget: 'attest-target',
  ProvisionTarget: 'provision-target',
  ReleaseKey: 'release-key',
  JoinOverlay: 'join-overlay',
  PreCopy: 'pre-copy',
  FreezeDump: 'freeze-dump',
  Restore: 'restore',
  CutOver: 'cut-over',
  Verify: 'verify',
  Commit: 'commit',
  Rotate: 'rotate',
} as const;

/** How long each container-migration step's action may take before it counts as timed out. */
export const CONTAINER_STEP_TIMEOUT_MS = Object.freeze({
  admit: 10_000,
  'attest-target': 30_000,
  'provision-target': 300_000,
  'release-key': 30_000,
  'join-overlay': 15_000,
  'pre-copy': 1_800_000,
  'freeze-dump': 120_000,
  restore: 120_000,
  'cut-over': 15_000,
  verify: 10_000,
  commit: 60_000,
  rotate: 60_000,
} satisfies Record<(typeof ContainerStep)[keyof typeof ContainerStep], number>);

const T = CONTAINER_STEP_TIMEOUT_MS;
const { KeyBroker, VmLifecycle, HostAgent, ContainerCheckpoint, NetworkOverlay } = Participant;

/**
 * The container migration saga, exactly the twelve steps of ARCHITECTURE §5.
 *
 * **Pivot: `verify`.** The table draws the point of no return between verify and commit. `verify` is the
 * go/no-go step: it only probes the workload at its overlay IP, so when it gives up (error or timeout)
 * nothing of its own needs undoing and the cut-over, restore, freeze, ... are compensated back to the
 * source. Once it has succeeded the source is disposable and `commit` (kill the source container,
 * delete images) and `rotate` are retried until done. `commit` is not the pivot because it destroys the
 * source: an ambiguous commit timeout followed by a rollback could leave the workload nowhere. Cancels
 * are refused from the moment `verify` is sent.
 */
export const CONTAINER_MIGRATION: SagaDefinition = defineSaga({
  name: 'container-migration',
  version: 1,
  steps: [
    admitStep('container', T.admit),
    attestTargetStep(T['attest-target']),
    {
      name: ContainerStep.ProvisionTarget,
      class: StepClass.Compensable,
      description: 'launch the target VM paused, measure, verify, inject identity, resume',
      participant: VmLifecycle,
      collaborators: [HostAgent, KeyBroker],
      action: 'provision-vm',
      timeoutMs: T['provision-target'],
      compensation: { command: 'destroy-vm' },
    },
    {
      name: ContainerStep.ReleaseKey,
      class: StepClass.Compensable,
      description: 'release the migration key on fresh evidence of both guests',
      participant: KeyBroker,
      action: 'release-migration-key',
      timeoutMs: T['release-key'],
      compensation: { command: 'revoke-migration-key' },
    },
    {
      name: ContainerStep.JoinOverlay,
      class: StepClass.Compensable,
      description: 'admit the target guest to the overlay with its attested WireGuard key',
      participant: NetworkOverlay,
      action: 'add-peer',
      timeoutMs: T['join-overlay'],
      compensation: { command: 'remove-peer' },
    },
    {
      name: ContainerStep.PreCopy,
      class: StepClass.Compensable,
      description: 'stream iterative encrypted pre-dumps to the target until converged',
      participant: ContainerCheckpoint,
      action: 'pre-copy',
      timeoutMs: T['pre-copy'],
      retry: TRANSFER_RETRY,
      compensation: { command: 'discard-images', timeoutMs: 60_000 },
    },
    {
      name: ContainerStep.FreezeDump,
      class: StepClass.Compensable,
      description: 'freeze and dump the source container (blackout starts, network locked)',
      participant: ContainerCheckpoint,
      action: 'freeze-dump',
      timeoutMs: T['freeze-dump'],
      retry: BLACKOUT_RETRY,
      compensation: { command: 'thaw-source', timeoutMs: 30_000 },
    },
    {
      name: ContainerStep.Restore,
      class: StepClass.Compensable,
      description: 'restore the container on the target, not yet resumed',
      participant: ContainerCheckpoint,
      action: 'restore',
      timeoutMs: T.restore,
      retry: BLACKOUT_RETRY,
      compensation: { command: 'kill-target', timeoutMs: 30_000 },
    },
    {
      name: ContainerStep.CutOver,
      class: StepClass.Compensable,
      description: 'move the /32 to the target peer and resume the target (blackout ends)',
      participant: NetworkOverlay,
      collaborators: [ContainerCheckpoint],
      action: 'cut-over',
      timeoutMs: T['cut-over'],
      retry: BLACKOUT_RETRY,
      compensation: { command: 'revert-cut-over' },
    },
    verifyStep(T.verify),
    {
      name: ContainerStep.Commit,
      class: StepClass.Retriable,
      description: 'kill the source container and delete the images',
      participant: ContainerCheckpoint,
      action: 'commit',
      timeoutMs: T.commit,
    },
    rotateStep('revoke the migration key, rotate overlay keys, revoke source-placement secrets', T.rotate),
  ],
});
