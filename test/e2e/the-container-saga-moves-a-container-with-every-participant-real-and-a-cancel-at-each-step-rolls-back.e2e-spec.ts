import { migrationIdFor, subjects, type MigrationDetail } from '@ccm/contracts';
import { pollUntil } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { SagaRows } from './support/chaos.js';
import {
  OVERLAY,
  signal,
  startRealContainerStack,
  type RealContainerStack,
} from './support/real-container-stack.js';

const STEPS = [
  'admit',
  'attest-target',
  'provision-target',
  'release-key',
  'join-overlay',
  'pre-copy',
  'freeze-dump',
  'restore',
  'cut-over',
  'verify',
  'commit',
  'rotate',
];

/** The compensations of the steps before the point of no return that act on a participant. */
const COMPENSATIONS = {
  'provision-target': 'destroy-vm',
  'release-key': 'revoke-migration-key',
  'join-overlay': 'remove-peer',
  'pre-copy': 'discard-images',
  'freeze-dump': 'thaw-source',
  restore: 'kill-target',
  'cut-over': 'revert-cut-over',
};

interface Replay {
  outcome?: { phase: string };
  steps: Array<{ step: string; kind: string; participant: string; status: string; command: string }>;
  keyReleases: Array<{ subject: string; name: string }>;
}

const OverlayView = z
  .object({ peers: z.array(z.object({ vmId: z.string(), workloadIps: z.array(z.string()) }).loose()) })
  .loose();

/**
 * `ccm migrate` of a container on the local stack with no scripted participant: the coordinator,
 * key-broker, vm-lifecycle, container-checkpoint, network-overlay and two host-agents as processes,
 * the target VM launched attested by the vm-lifecycle with its guest-agent started inside it, the
 * migration key released to both guests' fresh evidence, the /32 moved by the overlay. Then a cancel
 * at each step before the point of no return, on the same stack, rolls back to the source.
 */
describe('the container saga moves a container with every participant real, and a cancel at each step rolls back', () => {
  const CANCELS = [
    // step, the process that serves it first (held with SIGSTOP so the cancel lands during the step)
    { step: 'attest-target', hold: 'key-broker', workload: 'web-2' },
    { step: 'provision-target', hold: 'vm-lifecycle', workload: 'web-3' },
    { step: 'release-key', hold: 'source-guest', workload: 'web-4' },
    { step: 'join-overlay', hold: 'network-overlay', workload: 'web-5' },
    { step: 'pre-copy', hold: 'container-checkpoint', workload: 'web-6' },
    // The overlay served join-overlay: it is held once that step is done, while a long pre-copy runs.
    { step: 'cut-over', hold: 'network-overlay', workload: 'web-7', after: 'join-overlay', pages: 8192 },
    // container-checkpoint serves the step before these too: it is held once the step is in flight
    // (read from the coordinator's rows); a container dirtying every page each round never converges,
    // so the final dump and the restore carry all 32 MiB and last long enough to be caught.
    {
      step: 'freeze-dump',
      hold: 'container-checkpoint',
      workload: 'web-8',
      during: true,
      pages: 8192,
      dirty: 200_000,
    },
    {
      step: 'restore',
      hold: 'container-checkpoint',
      workload: 'web-9',
      during: true,
      pages: 8192,
      dirty: 200_000,
    },
  ] as const satisfies ReadonlyArray<{
    step: string;
    hold: string;
    workload: string;
    after?: string;
    during?: boolean;
    pages?: number;
    dirty?: number;
  }>;
  let rows: SagaRows;
  let s: RealContainerStack;
  const ips = new Map<string, string>();

  beforeAll(async () => {
    s = await startRealContainerStack(['web-1', ...CANCELS.map((c) => c.workload)]);
    ips.set('web-1', await s.runContainer('web-1', 1024, 1000));
    for (const c of CANCELS)
      ips.set(
        c.workload,
        await s.runContainer(c.workload, 'pages' in c ? c.pages : 1024, 'dirty' in c ? c.dirty : 2000),
      );
    rows = await SagaRows.connect(s.stack.postgres.url);
  }, 300_000);

  afterAll(async () => {
    await rows?.close();
    await s?.close();
  });

  const detail = (id: string) => s.ccmJson<MigrationDetail>(['migration', id]);
  const overlay = () =>
    s.send(
      'operator',
      subjects.cmd('network-overlay', 'describe-overlay'),
      { overlayId: OVERLAY },
      OverlayView,
    );
  const holderOf = async (ip: string) =>
    (await overlay()).peers.filter((p) => p.workloadIps.includes(ip)).map((p) => p.vmId);
  const vmsOf = (id: string) => s.provisionedVms(id);
  const replay = (id: string, until: (r: Replay) => boolean) =>
    pollUntil(`ccm audit replay ${id}`, () => s.ccmJson<Replay>(['audit', 'replay', id]), until, {
      timeoutMs: 30_000,
    });
  const releases = (id: string) => s.releases(id);

  it('ccm migrate --follow ends Succeeded: the counter goes on in the new VM, the source is gone, the key went to both guests, the /32 moved', async () => {
    const id = migrationIdFor('real-1');
    const run = await s.ccm([
      'migrate',
      'web-1',
      '--from',
      'host-a',
      '--to',
      'host-b',
      '--follow',
      '--idempotency-key',
      'real-1',
    ]);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    for (const step of STEPS) expect(run.stdout).toContain(`  ✓ ${step} in `);
    const d = await detail(id);
    expect(d.phase, d.reason).toBe('Succeeded');
    for (const step of d.steps) expect(step.attempts.at(-1)!.status, step.name).toBe('Succeeded');

    // The target VM: launched attested on host-b for this migration, running, its guest-agent up.
    const [target] = await vmsOf(id);
    expect(target).toMatchObject({ hostId: 'host-b', desired: 'Running' });
    const at = await s.guests.send(target.vmId, 'describe', { id: 'web-1' });
    expect(at).toMatchObject({ state: 'running', migrationId: id });
    await pollUntil(
      'web-1 counts on at the target',
      () => s.counter(target.vmId, 'web-1'),
      (c) => c > (at.counter as number) + 2,
    );
    expect((await s.guests.send(s.sourceVm, 'describe', { id: 'web-1' })).state).toBe('killed');

    // The key: one grant over fresh evidence of the source and the new guest, revoked by rotate.
    const grant = (await releases(id)).find((r) => r.decision.granted)!.decision;
    expect(grant.evidence.map((e) => [e.role, e.vmId])).toEqual([
      ['source', s.sourceVm],
      ['target', target.vmId],
    ]);
    // The /32 is the target's now.
    expect(await holderOf(ips.get('web-1')!)).toEqual([target.vmId]);

    // The audit replay: every step served by its participant, the release decided and revoked.
    const r = await replay(
      id,
      (t) => t.outcome?.phase === 'Succeeded' && t.keyReleases.some((k) => k.name === 'revoked'),
    );
    const served = new Map(
      r.steps
        .filter((x) => x.kind === 'action' && x.status === 'succeeded')
        .map((x) => [x.step, x.participant]),
    );
    expect(Object.fromEntries(served)).toMatchObject({
      'attest-target': 'key-broker',
      'provision-target': 'vm-lifecycle',
      'release-key': 'key-broker',
      'join-overlay': 'network-overlay',
      'pre-copy': 'container-checkpoint',
      'freeze-dump': 'container-checkpoint',
      restore: 'container-checkpoint',
      'cut-over': 'network-overlay',
      commit: 'container-checkpoint',
      rotate: 'key-broker',
    });
    expect(r.keyReleases.map((k) => k.name)).toEqual(expect.arrayContaining(['release-decided', 'revoked']));
    console.log(`[real container saga] ${run.stdout.trim().split('\n').at(-1)}`);
  }, 240_000);

  for (const c of CANCELS) {
    it(`a cancel during ${c.step} rolls back: the source counts on, the target VM is gone, no key stands, the /32 stays at the source`, async () => {
      const key = `cancel-${c.step}`;
      const id = migrationIdFor(key);
      const held = c.hold === 'source-guest' ? s.guestPid(s.sourceVm)! : s.services.get(c.hold)!.child.pid!;
      expect(held).toBeGreaterThan(0);
      // Held (SIGSTOP) before the migration starts when no earlier step needs it (else once the step
      // before it is done), so the step's first command waits and the cancel lands during the step.
      const after = 'after' in c ? c.after : undefined;
      const during = 'during' in c;
      if (!after && !during) signal(held, 'SIGSTOP');
      try {
        const started = await s.migrate(c.workload, key, { vm: s.sourceVm });
        expect(started.code, started.stderr).toBe(0);
        if (after) {
          await pollUntil(
            `${after} of ${id} done`,
            () => s.operator.find(id),
            (d) =>
              d?.steps
                .find((x) => x.name === after)
                ?.attempts.some((a) => a.kind === 'action' && a.status === 'Succeeded') ?? false,
            { timeoutMs: 90_000, intervalMs: 10 },
          );
          signal(held, 'SIGSTOP');
        }
        if (during) {
          await pollUntil(`${c.step} of ${id} in flight`, () => rows.inFlight(id, c.step), Boolean, {
            timeoutMs: 90_000,
            intervalMs: 5,
          });
          signal(held, 'SIGSTOP');
          // held while the step was still in flight: the cancel lands during it
          expect(await rows.inFlight(id, c.step), `${c.step} still in flight when held`).toBe(true);
        }
        const inFlight = (d: MigrationDetail, step: string): boolean =>
          d.steps
            .find((x) => x.name === step)
            ?.attempts.some((a) => a.kind === 'action' && a.status === 'InFlight') ?? false;
        await pollUntil(
          `${c.step} of ${id} in flight`,
          () => s.operator.find(id),
          (d) => (d ? inFlight(d, c.step) : false),
          { timeoutMs: 90_000, intervalMs: 20 },
        );
        const cancel = await s.ccm(['cancel', id, '--reason', `e2e cancel during ${c.step}`]);
        expect(cancel.code, cancel.stderr).toBe(0);
        await pollUntil(
          'the cancel accepted',
          () => detail(id),
          (d) => d.phase !== 'Running' || d.phaseHistory.some((p) => p.phase === 'Compensating'),
          {
            timeoutMs: 30_000,
          },
        );
      } finally {
        signal(held, 'SIGCONT');
      }
      const d = await pollUntil(
        'the migration ends',
        () => detail(id),
        (x) => Boolean(x.endedAt),
        { timeoutMs: 180_000 },
      );
      // A cancelled migration ends `Cancelled` once every compensation before it ran. The held service
      // may also make the step time out on its short clock before the cancel lands (a loaded machine):
      // then it ends `RolledBack` from that fault, with the same duties.
      expect(['Cancelled', 'RolledBack'], d.reason).toContain(d.phase);
      // Every step whose action may have acted was undone by its real participant.
      for (const [step, command] of Object.entries(COMPENSATIONS)) {
        const attempts = d.steps.find((x) => x.name === step)?.attempts ?? [];
        if (!attempts.some((a) => a.kind === 'action' && a.status !== 'Failed')) continue;
        expect(attempts.filter((a) => a.kind === 'compensation').at(-1), step).toMatchObject({
          command,
          status: 'Succeeded',
        });
      }
      expect(d.steps.find((x) => x.name === c.step)!.attempts.length).toBeGreaterThan(0);

      // The source container was never frozen for good: it runs and counts on, and answers.
      const c0 = await s.counter(s.sourceVm, c.workload);
      expect((await s.guests.send(s.sourceVm, 'describe', { id: c.workload })).state).toBe('running');
      await pollUntil(
        `${c.workload} counts on at the source`,
        () => s.counter(s.sourceVm, c.workload),
        (n) => n > c0 + 2,
      );
      // The target VM is gone (wanted Destroyed, and its guest-agent no longer answers).
      for (const vm of await vmsOf(id)) {
        expect(vm.desired).toBe('Destroyed');
        await pollUntil(
          `the guest-agent of ${vm.vmId} is gone`,
          () =>
            s.guests.send(vm.vmId, 'identity', {}, { timeoutMs: 500 }).then(
              () => 'up',
              () => 'gone',
            ),
          (x) => x === 'gone',
          { timeoutMs: 20_000 },
        );
      }
      // No key stands: a grant (if any) was revoked.
      const r = await replay(id, (t) => t.outcome?.phase === d.phase);
      if ((await releases(id)).some((x) => x.decision.granted)) {
        expect(r.keyReleases.map((k) => k.name)).toContain('revoked');
      }
      // The /32 is the source's.
      expect(await holderOf(ips.get(c.workload)!)).toEqual([s.sourceVm]);
    }, 240_000);
  }
});
