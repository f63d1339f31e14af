import { type SagaDefinition } from '@ccm/saga';
import { pollUntil, newMigration, settled } from '@ccm/testing';
import { describe, expect, it } from 'vitest';
import { VERIFY_DELEGATE } from './dispatcher.js';
import { SAGAS, compensationsFrom, coordinatorWorld, kindOf } from '../testing/world.js';

/** Every step before the pivot that a participant carries out: a cancel can arrive while it runs. */
const beforePivot = SAGAS.flatMap((def) =>
  def.steps
    .map((step, index) => ({ def, step: step.name, index }))
    .filter((c) => c.index > 0 && c.index < def.pivotIndex),
);

describe('cancelling a migration', () => {
  const w = coordinatorWorld({ CCM_SAGA_MAX_PER_TARGET_HOST: '1' });
  let n = 0;

  /** Starts a migration whose `step` action is held until the returned release is called. */
  async function holdAt(def: SagaDefinition, step: string, verb?: string) {
    let release!: () => void;
    const until = new Promise<void>((r) => (release = r));
    const { key, id } = newMigration();
    w.participants.plan(id, (c) =>
      c.step === step && c.kind === 'action' && (!verb || c.verb === verb)
        ? { kind: 'hold', until }
        : undefined,
    );
    n += 1;
    await w.operator.migrate(
      { workload: `c${n}`, kind: kindOf(def), sourceHost: `s${n}`, targetHost: `t${n}` },
      key,
    );
    await pollUntil(`${step} to be running`, () =>
      w.participants.receivedFor(id).some((c) => c.step === step),
    );
    return { id, release, host: `t${n}` };
  }

  it.concurrent.for(beforePivot)(
    '$def.name: cancel while $step runs compensates it and every step before it',
    async ({ def, step, index }, { expect }) => {
      const { id, release } = await holdAt(def, step);
      await w.operator.cancel({ migrationId: id, reason: 'operator changed their mind' });
      await pollUntil(
        'Cancelling',
        () => w.operator.find(id),
        (m) => m?.phase === 'Cancelling',
      );
      release();
      const { detail, events } = await settled(w.operator, id);
      expect(detail.phase).toBe('Cancelled');
      expect(detail.reason).toContain('operator changed their mind');
      expect(events.filter((e) => e.name === 'compensation-succeeded').map((e) => e.data['step'])).toEqual(
        compensationsFrom(def, index),
      );
      expect(events.find((e) => e.name === 'cancel-accepted')?.data['reason']).toBe(
        'operator changed their mind',
      );
      const later = def.steps.slice(index + 1).map((s) => s.name);
      expect(
        w.participants.receivedFor(id).filter((c) => c.kind === 'action' && later.includes(c.step)),
      ).toEqual([]);
    },
  );

  it('cancel while queued ends it Cancelled before anything is sent', async () => {
    const blocker = await holdAt(SAGAS[0], 'attest-target');
    const { key, id } = newMigration();
    await w.operator.migrate(
      { workload: 'queued-one', sourceHost: 'elsewhere', targetHost: blocker.host },
      key,
    );
    await pollUntil(
      'queued',
      () => w.operator.find(id),
      (m) => m?.phase === 'Pending',
    );
    await w.operator.cancel({ migrationId: id });
    const { detail, events } = await settled(w.operator, id);
    expect(detail.phase).toBe('Cancelled');
    expect(detail.admittedAt).toBeUndefined();
    expect(detail.reason).toContain('cancelled before start');
    expect(w.participants.receivedFor(id)).toEqual([]);
    expect(events.map((e) => e.name)).toEqual(['requested', 'cancel-accepted', 'phase-changed', 'finished']);
    blocker.release();
    expect((await settled(w.operator, blocker.id)).detail.phase).toBe('Succeeded');
  });

  it.for(SAGAS)(
    '$name: cancel after the point of no return is refused, saying why, and it completes',
    async (def) => {
      // Hold the command the verify step delegates to for this kind (regression: a VM's verify is
      // host-agent `verify-vm`; holding `probe-workload` held nothing, so it raced to Succeeded).
      const { id, release } = await holdAt(def, 'verify', VERIFY_DELEGATE[kindOf(def)].verb);
      await w.operator.cancel({ migrationId: id, reason: 'too late?' });
      const refused = await pollUntil('the refusal', () => w.operator.eventsOf(id, 'cancel-refused')[0]);
      expect(refused.data).toMatchObject({ reason: 'PastPointOfNoReturn' });
      expect(refused.data['message']).toContain('past the point of no return');
      expect((await w.operator.get(id)).phase).toBe('Running');
      release();
      const { detail } = await settled(w.operator, id);
      expect(detail.phase).toBe('Succeeded');
      expect(detail.steps.every((s) => s.attempts.every((a) => a.kind === 'action'))).toBe(true);
    },
  );

  it('cancel after the end is refused as finished', async () => {
    const { key, id } = newMigration();
    await w.operator.migrate({ workload: 'done-already', sourceHost: 'a1', targetHost: 'b1' }, key);
    await settled(w.operator, id);
    await w.operator.cancel({ migrationId: id });
    const refused = await pollUntil('the refusal', () => w.operator.eventsOf(id, 'cancel-refused')[0]);
    expect(refused.data).toMatchObject({ reason: 'AlreadyFinished' });
  });

  it('cancel of a migration nobody asked for is dead-lettered as NOT_FOUND', async () => {
    await w.operator.cancel({ migrationId: 'mig-nobody' });
    const parked = await pollUntil('the dead letter', async () =>
      (await w.operator.deadLetters()).find((d) => d.data.includes('mig-nobody')),
    );
    expect(parked.subject).toBe('ccm.dlq.saga-coordinator.cancel-intake');
    expect(parked.reason).toContain('NOT_FOUND');
  });
});
