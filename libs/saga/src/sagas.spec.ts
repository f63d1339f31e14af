import { isServiceName } from '@ccm/contracts';
import { describe, expect, it } from 'vitest';
import { CONTAINER_MIGRATION, CONTAINER_STEP_TIMEOUT_MS } from './container-migration.js';
import { type SagaDefinition, StepClass } from './definition.js';
import { createSagaMachine } from './machine.js';
import { SagaPhase, StepStatus } from './phases.js';
import { SagaDriver } from './test-driver.js';
import { VM_MIGRATION, VM_STEP_TIMEOUT_MS } from './vm-migration.js';

const SAGAS: Array<[string, SagaDefinition]> = [
  ['container migration', CONTAINER_MIGRATION],
  ['VM migration', VM_MIGRATION],
];

describe('the container migration saga', () => {
  it('has the twelve steps of ARCHITECTURE §5 in order, verify as the pivot', () => {
    expect(CONTAINER_MIGRATION.steps.map((s) => [s.name, s.class, s.compensation?.command ?? null])).toEqual([
      ['admit', StepClass.Compensable, 'release-admission'],
      ['attest-target', StepClass.Compensable, null],
      ['provision-target', StepClass.Compensable, 'destroy-vm'],
      ['release-key', StepClass.Compensable, 'revoke-migration-key'],
      ['join-overlay', StepClass.Compensable, 'remove-peer'],
      ['pre-copy', StepClass.Compensable, 'discard-images'],
      ['freeze-dump', StepClass.Compensable, 'thaw-source'],
      ['restore', StepClass.Compensable, 'kill-target'],
      ['cut-over', StepClass.Compensable, 'revert-cut-over'],
      ['verify', StepClass.Pivot, null],
      ['commit', StepClass.Retriable, null],
      ['rotate', StepClass.Retriable, null],
    ]);
    expect(CONTAINER_MIGRATION.pivotIndex).toBe(9);
  });

  it('names the participant of each step as in the table', () => {
    expect(CONTAINER_MIGRATION.steps.map((s) => s.action.participant)).toEqual([
      'saga-coordinator',
      'key-broker',
      'vm-lifecycle',
      'key-broker',
      'network-overlay',
      'container-checkpoint',
      'container-checkpoint',
      'container-checkpoint',
      'network-overlay',
      'saga-coordinator',
      'container-checkpoint',
      'key-broker',
    ]);
  });
});

describe('the VM migration saga', () => {
  it('has the ten steps of ARCHITECTURE §5 in order, verify as the pivot', () => {
    expect(
      VM_MIGRATION.steps.map((s) => [s.name, s.class, s.action.participant, s.compensation?.command ?? null]),
    ).toEqual([
      ['admit', StepClass.Compensable, 'saga-coordinator', 'release-admission'],
      ['attest-target', StepClass.Compensable, 'key-broker', null],
      ['transport-session', StepClass.Compensable, 'key-broker', 'close-transport-session'],
      ['prepare-incoming', StepClass.Compensable, 'host-agent', 'destroy-incoming'],
      ['start-migration', StepClass.Compensable, 'host-agent', 'cancel-migration'],
      ['converge', StepClass.Compensable, 'host-agent', null],
      ['switch-over', StepClass.Compensable, 'host-agent', 'switch-back'],
      ['verify', StepClass.Pivot, 'saga-coordinator', null],
      ['destroy-source', StepClass.Retriable, 'host-agent', null],
      ['rotate', StepClass.Retriable, 'key-broker', null],
    ]);
  });
});

describe.each(SAGAS)('%s definition', (_name, def) => {
  it('addresses only CCM services (the service names of libs/contracts)', () => {
    for (const s of def.steps) {
      for (const p of [s.action.participant, s.compensation?.participant, ...s.collaborators]) {
        if (p !== undefined) expect(isServiceName(p), `${s.name}: ${p}`).toBe(true);
      }
    }
  });

  it('gives every step a timeout from its table and retries after the pivot until done', () => {
    const table: Record<string, number> =
      def === CONTAINER_MIGRATION ? CONTAINER_STEP_TIMEOUT_MS : VM_STEP_TIMEOUT_MS;
    for (const s of def.steps) expect(s.action.timeoutMs).toBe(table[s.name]);
    for (const s of def.steps.slice(def.pivotIndex + 1)) {
      expect(s.action.retry.maxAttempts).toBe(Number.POSITIVE_INFINITY);
    }
  });

  it('happy path: every action once, in order, no compensation, Succeeded', () => {
    const d = new SagaDriver(createSagaMachine(def), 'mig-42', 0);
    d.start();
    let t = 0;
    while (d.awaited()) d.feed({ type: 'StepSucceeded', step: d.awaited()!.step, attempt: 1 }, (t += 100));
    expect(d.of('SendAction').map((s) => [s.step, s.idempotencyKey])).toEqual(
      def.steps.map((s) => [s.name, `mig-42:${s.name}:1`]),
    );
    expect(d.of('SendCompensation')).toEqual([]);
    expect(d.state.phase).toBe(SagaPhase.Succeeded);
    expect(d.state.steps.every((s) => s.status === StepStatus.Succeeded)).toBe(true);
    expect(d.state.phaseHistory.map((p) => p.phase)).toEqual([
      SagaPhase.Pending,
      SagaPhase.Running,
      SagaPhase.Succeeded,
    ]);
    expect(d.state.phaseHistory.at(-1)?.at).toBe(def.steps.length * 100);
  });
});
