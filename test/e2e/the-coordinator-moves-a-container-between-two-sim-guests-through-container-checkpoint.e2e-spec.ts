import { randomBytes } from 'node:crypto';
import { sealMigrationKey } from '@ccm/sealing';
import {
  FAST_ENV,
  guestClient,
  newMigration,
  pollUntil,
  settled,
  startActors,
  startGuest,
  startServiceProcess,
  startTestStack,
  type Behaviour,
  type GuestClient,
  type GuestProcess,
  type OperatorClient,
  type ReceivedCommand,
  type ScriptedParticipants,
  type ServiceProcess,
  type TestStack,
} from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SOURCE = 'vm-src';
const TARGET = 'vm-dst';
const CHECKPOINT_STEPS = ['pre-copy', 'freeze-dump', 'restore', 'commit'];

/**
 * The meeting of the coordinator and the real container-checkpoint: the saga-coordinator process
 * sends the container saga's checkpoint steps (and their compensations) to the container-checkpoint
 * process, which drives two real guest-agent processes (sim driver). Only the other services' steps
 * are scripted: vm-lifecycle's provision-vm names the two guests, the key-broker's release-key
 * loads the migration key into both guests (what release-migration-key will deliver), the overlay's
 * join, cut-over and probe answer as the overlay would.
 */
describe('the coordinator moves a container between two sim guests through container-checkpoint', () => {
  let stack: TestStack;
  let coordinator: ServiceProcess;
  let checkpoint: ServiceProcess;
  let operator: OperatorClient;
  let participants: ScriptedParticipants;
  let nc: NatsConnection;
  let g: GuestClient;
  const guests: GuestProcess[] = [];
  const pub = new Map<string, Buffer>();
  /** Migrations whose overlay cut-over is scripted to fail (after restore: everything rolls back). */
  const failCutOver = new Set<string>();

  const counter = async (vm: string, id: string) => (await g.send(vm, 'describe', { id })).counter as number;

  async function loadKey(migrationId: string): Promise<void> {
    const key = randomBytes(32);
    for (const vm of [SOURCE, TARGET]) {
      const sealedKey = sealMigrationKey(key, pub.get(vm)!, { migrationId, keyId: 'mk-1' }).toString(
        'base64',
      );
      await g.send(vm, 'load-key', { migrationId, keyId: 'mk-1', sealedKey });
    }
  }

  const script = (c: ReceivedCommand): Behaviour | undefined => {
    if (c.kind !== 'action') return undefined;
    if (c.verb === 'provision-vm')
      return { kind: 'succeed', result: { targetVmId: TARGET, sourceVmId: SOURCE } };
    if (c.verb === 'release-migration-key') return { kind: 'hold', until: loadKey(c.migrationId) };
    if (c.verb === 'cut-over' && failCutOver.has(c.migrationId)) {
      return {
        kind: 'fail',
        retryable: false,
        effect: 'none',
        code: 'CONFLICT',
        message: 'scripted cut-over refusal',
      };
    }
    return undefined;
  };

  beforeAll(async () => {
    stack = await startTestStack({ scriptedHosts: true });
    nc = await stack.connectAs('operator');
    g = await guestClient(nc, stack.keysDir);
    const env = { CCM_GUEST_STREAM_CHUNK_BYTES: '16384', CCM_GUEST_STREAM_TIMEOUT_MS: '10000' };
    guests.push(
      ...(await Promise.all([
        startGuest(stack, SOURCE, g.send, env),
        startGuest(stack, TARGET, g.send, env),
      ])),
    );
    for (const vm of [SOURCE, TARGET]) {
      pub.set(vm, Buffer.from((await g.send(vm, 'identity', {})).publicKey as string, 'base64'));
    }
    ({ operator, participants } = await startActors(stack, script, ['container-checkpoint']));
    checkpoint = await startServiceProcess(
      'container-checkpoint',
      stack.env({
        CCM_INSTANCE_ID: 'checkpoint-e2e',
        CCM_LOG_LEVEL: 'log',
        CCM_CHECKPOINT_DIRTY_THRESHOLD_PAGES: '16',
        CCM_CHECKPOINT_MAX_ROUNDS: '4',
      }),
      { readyTimeoutMs: 60_000 },
    );
    // Step timeouts at 1/10 of the real ones: freeze-dump and restore get 12 s each.
    coordinator = await startServiceProcess(
      'saga-coordinator',
      stack.env({
        ...FAST_ENV,
        CCM_SAGA_TIME_SCALE: '0.1',
        CCM_INSTANCE_ID: 'coordinator-e2e',
        CCM_LOG_LEVEL: 'log',
      }),
      { readyTimeoutMs: 60_000 },
    );
  }, 180_000);

  afterAll(async () => {
    await coordinator?.stop('SIGTERM');
    await checkpoint?.stop('SIGTERM');
    await participants?.stop();
    await operator?.close();
    await Promise.allSettled(guests.map((p) => p.stop()));
    await nc?.close().catch(() => undefined);
    await stack?.stop();
  });

  async function running(id: string, pages: number): Promise<void> {
    await g.send(SOURCE, 'run-container', { id, pages, dirtyPagesPerSec: 1000 });
    await pollUntil(
      `${id} counts at the source`,
      () => counter(SOURCE, id),
      (c) => c > 2,
    );
  }

  it('Succeeded: the counter goes on at the target, the source is killed at commit, rounds and frozen time reported', async () => {
    await running('web-1', 4096);
    const { key, id } = newMigration();
    await operator.migrate(
      { workload: 'web-1', kind: 'container', sourceHost: 'host-a', targetHost: 'host-b' },
      key,
    );
    const { detail, events } = await settled(operator, id, 120_000);
    expect(detail.phase, detail.reason).toBe('Succeeded');
    for (const step of CHECKPOINT_STEPS) {
      const last = detail.steps.find((s) => s.name === step)!.attempts.at(-1)!;
      expect(last, step).toMatchObject({ participant: 'container-checkpoint', status: 'Succeeded' });
    }
    // nothing was scripted for container-checkpoint: the real one answered every checkpoint step
    expect(participants.received.filter((c) => c.participant === 'container-checkpoint')).toEqual([]);
    expect(detail.figures?.frozenMs).toBeGreaterThan(0);
    expect(detail.figures?.blackoutMs).toBeGreaterThanOrEqual(detail.figures!.frozenMs!);

    const progress = events
      .filter((e) => e.name === 'progressed')
      .map((e) => e.data['progress'] as { step: string; round?: number; stage?: string });
    const preDumps = progress.filter((p) => p.step === 'pre-copy');
    expect(preDumps.length).toBeGreaterThanOrEqual(2);
    expect(preDumps.map((p) => p.round)).toEqual(preDumps.map((_, i) => i + 1));
    // Progress is advisory and may still be in flight when the saga ends (the restore's "resumed at
    // target" came after Succeeded in one run): what arrived is in step order, the final dump in it.
    const order = ['pre-copy', 'freeze-dump', 'restore'];
    const steps = progress.map((p) => order.indexOf(p.step));
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(progress.some((p) => p.step === 'freeze-dump')).toBe(true);

    expect((await g.send(SOURCE, 'describe', { id: 'web-1' })).state).toBe('killed');
    const at = await g.send(TARGET, 'describe', { id: 'web-1' });
    expect(at).toMatchObject({ state: 'running', migrationId: id });
    await pollUntil(
      'the counter goes on at the target',
      () => counter(TARGET, 'web-1'),
      (c) => c > (at.counter as number) + 2,
    );
    console.log(
      `[checkpoint e2e] ${preDumps.map((p) => p.stage).join(', ')}; frozen ${detail.figures!.frozenMs!.toFixed(0)} ms, blackout ${detail.figures!.blackoutMs!.toFixed(0)} ms`,
    );
  });

  it('RolledBack after a failed cut-over: kill-target, thaw-source and discard-images run on the real service; the source counts on', async () => {
    await running('web-2', 1024);
    const { key, id } = newMigration();
    failCutOver.add(id);
    await operator.migrate(
      { workload: 'web-2', kind: 'container', sourceHost: 'host-a', targetHost: 'host-b' },
      key,
    );
    const { detail } = await settled(operator, id, 120_000);
    expect(detail.phase, detail.reason).toBe('RolledBack');
    const compensated = (step: string) =>
      detail.steps.find((s) => s.name === step)!.attempts.find((a) => a.kind === 'compensation');
    expect(compensated('restore')).toMatchObject({
      command: 'kill-target',
      participant: 'container-checkpoint',
      status: 'Succeeded',
    });
    expect(compensated('freeze-dump')).toMatchObject({ command: 'thaw-source', status: 'Succeeded' });
    expect(compensated('pre-copy')).toMatchObject({ command: 'discard-images', status: 'Succeeded' });
    expect((await g.send(TARGET, 'describe', { id: 'web-2' })).state).toBe('killed');
    const c0 = await counter(SOURCE, 'web-2');
    expect((await g.send(SOURCE, 'describe', { id: 'web-2' })).state).toBe('running');
    await pollUntil(
      'the source counts on',
      () => counter(SOURCE, 'web-2'),
      (c) => c > c0 + 3,
    );
  });
});
