import { CONTAINER_MIGRATION, VM_MIGRATION } from '@ccm/saga';
import { pollUntil, participantSteps, newMigration, settled } from '@ccm/testing';
import { describe, expect, it } from 'vitest';
import { coordinatorWorld, migrationHeldAtPreCopy, preDumpRound } from '../testing/world.js';

describe('a migration runs every step of its saga against participants over real NATS', () => {
  const w = coordinatorWorld();

  it.each([
    ['container', CONTAINER_MIGRATION],
    ['vm', VM_MIGRATION],
  ] as const)(
    'a %s migration succeeds, each step acting once, with its events in order',
    async (kind, def) => {
      const id = await w.operator.migrate({
        workload: `w-${kind}`,
        kind,
        sourceHost: 'host-a',
        targetHost: 'host-b',
      });
      const { detail, events } = await settled(w.operator, id);

      expect(detail).toMatchObject({
        phase: 'Succeeded',
        kind,
        workload: `w-${kind}`,
        requestedBy: 'operator',
      });
      expect(detail.steps.map((s) => s.status)).toEqual(def.steps.map(() => 'Succeeded'));
      expect(detail.phaseHistory.map((h) => h.phase)).toEqual(['Pending', 'Running', 'Succeeded']);
      expect(w.participants.effectsOf(id).map((e) => e.step)).toEqual(participantSteps(def));
      expect(w.participants.invalid).toEqual([]);
      expect(w.operator.invalidEvents).toEqual([]);

      const names = events.map((e) => e.name);
      expect(names.slice(0, 4)).toEqual(['requested', 'admitted', 'phase-changed', 'step-started']);
      expect(names.at(-1)).toBe('finished');
      expect(names.filter((n) => n === 'step-started')).toHaveLength(def.steps.length);
      const succeeded = events.filter((e) => e.name === 'step-succeeded');
      expect(succeeded.map((e) => e.data['step'])).toEqual(def.steps.map((s) => s.name));
      for (const e of succeeded) expect(e.data['durationMs']).toBeGreaterThanOrEqual(0);
      expect(events.every((e) => e.source === 'saga-coordinator')).toBe(true);
    },
  );

  it('commands carry what earlier steps learned and go to the right host', async () => {
    const id = await w.operator.migrate({
      workload: 'vm-ctx',
      kind: 'vm',
      sourceHost: 'src-1',
      targetHost: 'dst-1',
    });
    await settled(w.operator, id);
    const got = w.participants.receivedFor(id);
    const prepare = got.find((c) => c.verb === 'prepare-incoming')!;
    expect(prepare.subject).toBe('ccm.cmd.host.dst-1.step.prepare-incoming');
    // the spec and the guest address lease the source host reported at admission go to the target
    expect(prepare.payload.context).toMatchObject({
      transportSessionId: expect.any(String),
      vmSpec: { memoryMiB: 32 },
      guestNet: { address: '10.77.0.100', prefix: 24 },
    });
    const start = got.find((c) => c.verb === 'start-migration')!;
    expect(start.subject).toBe('ccm.cmd.host.src-1.step.start-migration');
    expect(start.payload.context).toMatchObject({
      targetVmId: 'vm-ctx',
      incomingUri: expect.stringMatching(/^tcp:/),
    });
    const verify = got.find((c) => c.verb === 'verify-vm')!;
    expect(verify.subject).toBe('ccm.cmd.host.dst-1.step.verify-vm');
    expect(start.key).toBe(`${id}:start-migration:1`);
  });

  it('a participant that replies twice changes nothing', async () => {
    const { key, id } = newMigration();
    w.participants.plan(id, () => ({ kind: 'reply-twice' }));
    await w.operator.migrate({ workload: 'twice', sourceHost: 'host-a', targetHost: 'host-b' }, key);
    const { detail } = await settled(w.operator, id);
    expect(detail.phase).toBe('Succeeded');
    expect(detail.steps.every((s) => s.attempts.length === 1)).toBe(true);
  });

  it('forwards data-plane progress as migration events while pre-copy runs', async () => {
    const { id, release } = await migrationHeldAtPreCopy(w, 'progress');
    for (const round of [1, 2]) {
      await w.participants.publishProgress('checkpoint', preDumpRound(id, round));
    }
    const during = await pollUntil(
      'progress on the migration',
      () => w.operator.find(id),
      (m) => m?.progress?.['round'] === 2,
      { timeoutMs: 30_000 },
    );
    expect(during!.progress).toMatchObject({ reporter: 'container-checkpoint', bytesTransferred: 2000 });
    release();
    const { events } = await settled(w.operator, id);
    const progressed = events.filter((e) => e.name === 'progressed');
    expect(progressed.map((e) => (e.data['progress'] as { round: number }).round)).toEqual([1, 2]);
    expect(progressed[0].data['reporter']).toBe('container-checkpoint');
  });
});
