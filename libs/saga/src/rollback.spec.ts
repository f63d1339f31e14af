import { describe, expect, it } from 'vitest';
import { CONTAINER_MIGRATION } from './container-migration.js';
import { type SagaDefinition } from './definition.js';
import { createSagaMachine } from './machine.js';
import { CommandKind, SagaPhase, StepStatus } from './phases.js';
import { SagaDriver } from './test-driver.js';
import { VM_MIGRATION } from './vm-migration.js';

/** Every compensation of each saga, in the order a rollback from the pivot sends them. */
const ALL_COMPENSATIONS = {
  container: [
    'cut-over',
    'restore',
    'freeze-dump',
    'pre-copy',
    'join-overlay',
    'release-key',
    'provision-target',
    'admit',
  ],
  vm: ['switch-over', 'start-migration', 'prepare-incoming', 'transport-session', 'admit'],
};

/** The compensations expected when step `failed` gives up and every earlier step may have taken effect. */
function from(def: SagaDefinition, all: string[], failed: string, failedHadEffect = true): string[] {
  const upTo = def.steps.findIndex((s) => s.name === failed);
  const at = (name: string): number => def.steps.findIndex((s) => s.name === name);
  return all.filter((n) => at(n) < upTo || (at(n) === upTo && failedHadEffect));
}

const CASES: Array<[string, SagaDefinition, string[]]> = [
  ['container', CONTAINER_MIGRATION, ALL_COMPENSATIONS.container],
  ['vm', VM_MIGRATION, ALL_COMPENSATIONS.vm],
];

describe.each(CASES)('%s saga rollback', (_name, def, all) => {
  const machine = createSagaMachine(def);
  const upToPivot = def.steps.slice(0, def.pivotIndex + 1).map((s) => s.name);

  it.each(upToPivot)('failure at %s compensates exactly the steps that ran, in reverse order', (failing) => {
    const d = new SagaDriver(machine).runUntil(failing);
    d.fail({ retryable: false, effect: 'maybe' });
    expect(d.state.phase).toBe(all.length ? SagaPhase.Compensating : SagaPhase.RolledBack);
    while (d.awaited()) d.succeed();
    expect(d.compensated()).toEqual(from(def, all, failing));
    expect(d.state.phase).toBe(SagaPhase.RolledBack);
    expect(d.of('Finished')).toEqual([
      { type: 'Finished', phase: SagaPhase.RolledBack, reason: expect.stringContaining(`step "${failing}"`) },
    ]);
    expect(d.of('SendAction').map((a) => a.step)).toEqual(upToPivot.slice(0, upToPivot.indexOf(failing) + 1));
    expect(d.state.timers).toEqual([]);
  });

  it.each(upToPivot)('failure at %s known to have had no effect skips its own compensation', (failing) => {
    const d = new SagaDriver(machine).runUntil(failing);
    d.fail({ retryable: false, effect: 'none' });
    while (d.awaited()) d.succeed();
    expect(d.compensated()).toEqual(from(def, all, failing, false));
    expect(d.state.phase).toBe(SagaPhase.RolledBack);
  });

  it.each(upToPivot)('timeouts at %s until it gives up count as "may have taken effect"', (failing) => {
    const d = new SagaDriver(machine).runUntil(failing);
    while (d.awaited()?.kind === CommandKind.Action) {
      d.timeOut();
      if (d.state.steps.some((s) => s.status === StepStatus.Scheduled)) d.fireRetry();
    }
    while (d.awaited()) d.succeed();
    expect(d.compensated()).toEqual(from(def, all, failing));
    expect(d.state.phase).toBe(SagaPhase.RolledBack);
  });

  it('an earlier timed-out attempt still counts when the last attempt reports no effect', () => {
    const failing = all[0];
    const d = new SagaDriver(machine).runUntil(failing);
    d.timeOut();
    d.fireRetry();
    d.fail({ retryable: false, effect: 'none' });
    expect(d.awaited()).toMatchObject({ step: failing, kind: CommandKind.Compensation });
  });

  it.each(all)('a compensation of %s that keeps failing ends in NeedsOperator with the reason', (stuck) => {
    const pivot = def.steps[def.pivotIndex].name;
    const d = new SagaDriver(machine).runUntil(pivot);
    d.fail({ retryable: false, code: 'WORKLOAD_SILENT' });
    while (d.awaited()?.step !== stuck) d.succeed();
    while (d.awaited()) {
      d.fail({ retryable: true, code: 'STILL_BROKEN' });
      if (d.state.timers.some((t) => t.purpose === 'retry')) d.fireRetry();
    }
    const retry = def.steps.find((s) => s.name === stuck)!.compensation!.retry;
    expect(d.state.steps.find((s) => s.name === stuck)?.compensations).toHaveLength(retry.maxAttempts);
    expect(d.state.phase).toBe(SagaPhase.NeedsOperator);
    expect(d.state.steps.find((s) => s.name === stuck)?.status).toBe(StepStatus.CompensationFailed);
    expect(d.compensated()).toEqual(all.slice(0, all.indexOf(stuck) + 1));
    const reason = d.of('Finished')[0].reason;
    expect(reason).toContain(`of step "${stuck}"`);
    expect(reason).toContain('STILL_BROKEN');
    expect(reason).toContain('WORKLOAD_SILENT');
    const left = all.slice(all.indexOf(stuck) + 1);
    expect(reason).toContain(left.length ? `still to compensate: ${left.join(', ')}` : 'nothing else left');
    expect(d.state.reason).toBe(reason);
    expect(d.state.timers).toEqual([]);
  });

  it('a non-retryable compensation failure needs an operator at once', () => {
    const d = new SagaDriver(machine).runUntil(all[0]);
    d.fail({ retryable: false });
    d.fail({ retryable: false, code: 'GONE' });
    expect(d.state.phase).toBe(SagaPhase.NeedsOperator);
    expect(d.state.steps.find((s) => s.name === all[0])?.compensations).toHaveLength(1);
  });
});
