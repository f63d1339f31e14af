import {
  CcmError,
  STEP_COMMANDS,
  stepFailureEffect,
  type DataPlaneProgress,
  type StepCommand,
} from '@ccm/contracts';
import { pollUntil } from '@ccm/testing';
import { type Subscription } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointFixture, checkpointCommand, SOURCE, TARGET } from './testing/checkpoint-fixture.js';

interface Round {
  round: number;
  kind: string;
  pages: number;
  imageBytes: number;
  durationMs: number;
  dirtyPages: number;
}
type Result = Record<string, unknown>;

/**
 * The real container-checkpoint app drives two real guest-agent processes (sim driver) through the
 * container saga's checkpoint steps, sent as the saga-coordinator sends them; images cross guest to
 * guest as sealed chunks over TCP, progress goes out on `ccm.evt.checkpoint.<id>.progressed`.
 */
describe('container-checkpoint steps with two real guest-agents (sim)', () => {
  let f: CheckpointFixture;
  let n = 0;

  beforeAll(async () => {
    // A threshold the sim's counter page alone exceeds: pre-copy runs several rounds.
    f = await CheckpointFixture.start({
      CCM_CHECKPOINT_DIRTY_THRESHOLD_PAGES: '16',
      CCM_CHECKPOINT_MAX_ROUNDS: '4',
    });
  });
  afterAll(async () => {
    await f?.stop();
  });

  const ok = (r: unknown): Result => {
    if (r instanceof CcmError) throw new Error(`expected success, got ${r.code}: ${r.message}`);
    return r as Result;
  };
  const err = (r: unknown): CcmError => {
    if (!(r instanceof CcmError)) throw new Error(`expected a typed error, got ${JSON.stringify(r)}`);
    return r;
  };

  /** A counting container on the source and the migration key in both guests. */
  async function prepared(pages: number, dirtyPagesPerSec: number) {
    const id = `c${++n}`;
    await f.runContainer(id, pages, dirtyPagesPerSec);
    const base = checkpointCommand(id);
    await f.loadKey(base.migrationId);
    const cmd = (step: string, kind: StepCommand['kind'] = 'action', attempt = 1): StepCommand => ({
      ...base,
      step,
      kind,
      attempt,
    });
    return { id, migrationId: base.migrationId, cmd };
  }

  async function progressOf(migrationId: string): Promise<{ seen: DataPlaneProgress[]; sub: Subscription }> {
    const nc = await f.stack.connectAs('operator');
    const sub = nc.subscribe(`ccm.evt.checkpoint.${migrationId}.progressed`);
    const seen: DataPlaneProgress[] = [];
    void (async () => {
      for await (const m of sub) seen.push(m.json<{ data: DataPlaneProgress }>().data);
    })();
    return { seen, sub };
  }

  it('migrates a counting container: pre-copy rounds, freeze-dump, restore + resume at the target, commit', async () => {
    const { id, migrationId, cmd } = await prepared(8192, 2000);
    const { seen, sub } = await progressOf(migrationId);

    const pre = ok(await f.step(cmd('pre-copy'), 'pre-copy'));
    const rounds = pre.perRound as Round[];
    expect(pre.rounds).toBe(rounds.length);
    expect(
      rounds.length,
      'the counter page alone is dirty after round 1: more rounds follow',
    ).toBeGreaterThanOrEqual(2);
    expect(rounds.length).toBeLessThanOrEqual(4);
    expect(rounds[0]).toMatchObject({ round: 1, kind: 'pre-dump', pages: 8192 });
    expect(rounds[1].pages).toBeLessThan(8192);
    for (const r of rounds) {
      expect(r.imageBytes).toBeGreaterThan(r.pages * 4096);
      expect(r.durationMs).toBeGreaterThan(0);
    }
    expect(pre.bytesSent).toBe(rounds.reduce((a, r) => a + r.imageBytes, 0));
    expect(pre.converged).toBe(rounds.at(-1)!.dirtyPages <= 16);
    if (!pre.converged) expect(rounds.length).toBe(4);
    // a retry under a new attempt number acts no more: the same reply, no new round
    expect(ok(await f.step(cmd('pre-copy', 'action', 2), 'pre-copy'))).toEqual(pre);
    expect((await f.describe(SOURCE, id)).state).toBe('running');

    const dump = ok(await f.step(cmd('freeze-dump'), 'freeze-dump'));
    expect(dump).toMatchObject({ round: rounds.length + 1 });
    expect(dump.imageBytes as number).toBeGreaterThan(0);
    const frozen = await f.describe(SOURCE, id);
    expect(frozen.state).toBe('frozen');

    const restored = ok(await f.step(cmd('restore'), 'restore'));
    expect(restored).toMatchObject({ state: 'running', rounds: rounds.length + 1, targetVmId: TARGET });
    expect(restored.counter as number).toBeGreaterThanOrEqual(frozen.counter as number);
    expect(restored.frozenMs as number).toBeGreaterThan(0);
    await pollUntil(
      'the counter goes on at the target',
      () => f.counter(TARGET, id),
      (c) => c > (frozen.counter as number) + 3,
    );
    // the source stayed frozen until commit
    expect(await f.describe(SOURCE, id)).toMatchObject({ state: 'frozen', counter: frozen.counter });

    const commit = ok(await f.step(cmd('commit'), 'commit'));
    expect(commit).toMatchObject({ source: 'killed' });
    expect((await f.describe(SOURCE, id)).state).toBe('killed');
    expect(ok(await f.step(cmd('commit', 'action', 2), 'commit'))).toEqual(commit);
    expect((await f.describe(TARGET, id)).state).toBe('running');

    // progress: every round in order, then the resume at the target
    await pollUntil(
      'progress of every round',
      () => Promise.resolve(seen.length),
      (k) => k >= rounds.length + 2,
    );
    sub.unsubscribe();
    expect(seen.map((p) => p.round)).toEqual([
      ...rounds.map((r) => r.round),
      rounds.length + 1,
      rounds.length + 1,
    ]);
    expect(seen.map((p) => p.step)).toEqual([...rounds.map(() => 'pre-copy'), 'freeze-dump', 'restore']);
    expect(seen.at(-1)!.stage).toBe('resumed at target');
    // Each pre-dump round's total: what moved plus the pages dirty then (an estimate); the final
    // dump's is exactly what every round moved, so the bar ends full.
    for (const p of seen.slice(0, rounds.length))
      expect(p).toMatchObject({
        bytesTotal: p.bytesTransferred + p.remainingBytes!,
        bytesTotalEstimated: true,
      });
    const dumped = seen[rounds.length];
    expect(dumped.bytesTransferred).toBe((pre.bytesSent as number) + (dump.imageBytes as number));
    expect(dumped).toMatchObject({ bytesTotal: dumped.bytesTransferred, remainingBytes: 0 });
    expect(dumped.bytesTotalEstimated).toBeUndefined();
    console.log(
      `[checkpoint] ${rounds.map((r) => `round ${r.round}: ${r.pages} pages ${r.imageBytes} B ${r.durationMs.toFixed(0)} ms`).join('; ')}; final ${String(dump.pages)} pages ${String(dump.imageBytes)} B; frozen ${(restored.frozenMs as number).toFixed(0)} ms`,
    );
  });

  it('a target that lost its images refuses the restore; thaw-source and discard-images put the source back', async () => {
    const { id, cmd } = await prepared(1024, 400);
    ok(await f.step(cmd('pre-copy'), 'pre-copy'));
    ok(await f.step(cmd('freeze-dump'), 'freeze-dump'));
    const frozen = await f.counter(SOURCE, id);
    await f.startGuest(TARGET); // a new guest-agent: no rounds received
    const refused = err(await f.step(cmd('restore'), 'restore'));
    expect(refused).toMatchObject({ code: 'IMAGES_INCOMPLETE', retryable: false, effect: 'none' });
    expect(refused.details).toMatchObject({ vmId: TARGET, verb: 'restore', round: 1, status: 'missing' });

    // the coordinator compensates in reverse: restore had no effect, then freeze-dump, then pre-copy
    const thawed = ok(await f.step(cmd('freeze-dump', 'compensation'), 'thaw-source'));
    expect(thawed).toMatchObject({ state: 'running', sourceVmId: SOURCE });
    ok(await f.step(cmd('pre-copy', 'compensation'), 'discard-images'));
    await pollUntil(
      'the source counts on',
      () => f.counter(SOURCE, id),
      (c) => c > frozen + 3,
    );
    // compensations are idempotent too
    expect(ok(await f.step(cmd('freeze-dump', 'compensation', 2), 'thaw-source'))).toEqual(thawed);
    expect((await f.g.send(TARGET, 'list-containers', {})).containers).toEqual([]);
  });

  it('the target guest-agent dies mid pre-copy: the step fails (effect maybe), discard-images rolls back, the source counts on', async () => {
    await f.startGuest(TARGET);
    const { id, migrationId, cmd } = await prepared(8192, 20000);
    const { seen, sub } = await progressOf(migrationId);
    const pending = f.step(cmd('pre-copy'), 'pre-copy');
    await pollUntil(
      'round 1 to arrive',
      () => Promise.resolve(seen.length),
      (k) => k >= 1,
    );
    f.guests.get(TARGET)!.child.kill('SIGKILL');
    const failed = err(await pending);
    sub.unsubscribe();
    console.log(`[checkpoint] target killed after round ${seen.length}: ${failed.code} ${failed.message}`);
    expect(['UNAVAILABLE', 'TIMEOUT']).toContain(failed.code);
    expect(failed).toMatchObject({ retryable: true, effect: 'maybe' });
    const before = await f.counter(SOURCE, id);
    expect((await f.describe(SOURCE, id)).state).toBe('running');
    const discarded = ok(await f.step(cmd('pre-copy', 'compensation'), 'discard-images'));
    expect(discarded).toMatchObject({ discarded: { target: 'guest-not-running' } });
    await pollUntil(
      'the source counts on',
      () => f.counter(SOURCE, id),
      (c) => c > before + 3,
    );
    await f.startGuest(TARGET);
  });

  it('refuses bad input to every command with a typed error and loses nothing', async () => {
    await f.startGuest(TARGET);
    const { id, migrationId, cmd } = await prepared(64, 10);
    const verbs = Object.keys(STEP_COMMANDS['container-checkpoint']);
    for (const verb of verbs) {
      const e = err(await f.send(verb, { migrationId, step: verb }));
      expect(`${verb}:${e.code}`).toBe(`${verb}:VALIDATION_FAILED`);
    }
    const noSource = { ...cmd('pre-copy'), context: { targetVmId: TARGET } };
    const bad: Array<[string, StepCommand, string]> = [
      ['pre-copy', noSource, 'NO_SOURCE_VM'],
      ['freeze-dump', { ...noSource, step: 'freeze-dump' }, 'NO_SOURCE_VM'],
      ['restore', { ...noSource, step: 'restore' }, 'NO_SOURCE_VM'],
      ['pre-copy', { ...cmd('pre-copy'), context: { sourceVmId: SOURCE } }, 'VALIDATION_FAILED'],
      ['pre-copy', { ...cmd('pre-copy'), workload: { id, kind: 'vm' } }, 'NOT_A_CONTAINER'],
      [
        'pre-copy',
        { ...cmd('pre-copy'), context: { sourceVmId: SOURCE, targetVmId: SOURCE } },
        'VALIDATION_FAILED',
      ],
      ['pre-copy', { ...checkpointCommand('nowhere'), step: 'pre-copy' }, 'NOT_FOUND'],
      ['pre-copy', { ...checkpointCommand(id), step: 'pre-copy' }, 'NO_MIGRATION_KEY'],
      ['restore', cmd('restore'), 'CONFLICT'],
      ['commit', { ...checkpointCommand(id), step: 'commit' }, 'NOT_FOUND'],
    ];
    // each its own attempt: a repeated idempotency key would get the first refusal back
    for (const [i, [verb, c, code]] of bad.entries()) {
      const e = err(await f.step({ ...c, attempt: i + 1 }, verb));
      expect(`${verb}:${e.code}`).toBe(`${verb}:${code}`);
      expect(stepFailureEffect(e.toPayload()), `${verb}:${code}`).toBe('none');
    }
    // another container under a migration already bound to this one
    const other = { ...cmd('freeze-dump'), workload: { id: 'other', kind: 'container' as const } };
    expect(err(await f.step(other, 'freeze-dump')).code).toBe('CONFLICT');
    // compensations of a migration never seen here have nothing to undo
    for (const [step, verb] of [
      ['pre-copy', 'discard-images'],
      ['freeze-dump', 'thaw-source'],
      ['restore', 'kill-target'],
    ]) {
      const c = { ...checkpointCommand(id), step, kind: 'compensation' as const };
      expect(ok(await f.step(c, verb))).toEqual({ nothingToUndo: true });
    }
    // nothing lost: the container runs on at the source, nothing went to the target
    const c0 = await f.counter(SOURCE, id);
    await pollUntil(
      'the source counts on',
      () => f.counter(SOURCE, id),
      (c) => c > c0 + 2,
    );
    expect((await f.describe(SOURCE, id)).state).toBe('running');
    expect((await f.g.send(TARGET, 'list-containers', {})).containers).toEqual([]);
  });

  it('a compromised identity other than the coordinator may not drive a checkpoint step', async () => {
    const { id, cmd } = await prepared(64, 10);
    for (const as of ['operator', 'network-overlay', 'guest-agent'] as const) {
      for (const [c, verb] of [
        [cmd('freeze-dump'), 'freeze-dump'],
        [cmd('commit'), 'commit'],
        [cmd('freeze-dump', 'compensation'), 'thaw-source'],
      ] as const) {
        const e = err(await f.send(verb, c, { as }));
        expect(`${as}:${verb}:${e.code}`).toBe(`${as}:${verb}:UNAUTHORIZED`);
      }
    }
    expect((await f.describe(SOURCE, id)).state).toBe('running');
  });
});
