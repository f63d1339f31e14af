import { migrationIdFor } from '@ccm/contracts';
import { pollUntil } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESTART_COORDINATOR_ENV, runsExactlyOnce, SagaRows } from './support/chaos.js';
import {
  type SCALABLE,
  signal,
  startRealContainerStack,
  type RealContainerStack,
} from './support/real-container-stack.js';

/**
 * When each service loses a replica: at the step it serves, while that step is in flight. The
 * coordinator replica killed is the one holding the migration's lease.
 */
const KILLS: Array<{ service: (typeof SCALABLE)[number]; step: string }> = [
  { service: 'key-broker', step: 'attest-target' },
  { service: 'vm-lifecycle', step: 'provision-target' },
  { service: 'saga-coordinator', step: 'join-overlay' },
  { service: 'container-checkpoint', step: 'pre-copy' },
  { service: 'network-overlay', step: 'cut-over' },
];

describe('two replicas of key-broker, vm-lifecycle, container-checkpoint, network-overlay and the coordinator', () => {
  let s: RealContainerStack;
  let rows: SagaRows;

  beforeAll(async () => {
    // No supervisor: a killed replica stays dead, its twin carries on alone.
    s = await startRealContainerStack(['scaled-1'], {
      replicas: 2,
      coordinatorEnv: RESTART_COORDINATOR_ENV,
    });
    rows = await SagaRows.connect(s.stack.postgres.url);
    await s.runContainer('scaled-1', 8192, 2000);
  }, 300_000);

  afterAll(async () => {
    await rows?.close();
    await s?.close();
  });

  it('one replica of each killed with SIGKILL mid-migration, during the step it serves: the migration still ends Succeeded and the container runs once, at the target', async () => {
    const id = migrationIdFor('scaled-1');
    const run = await s.migrate('scaled-1', 'scaled-1');
    expect(run.code, run.stderr).toBe(0);
    const killed: string[] = [];
    for (const k of KILLS) {
      // In flight (or, for a step quicker than a poll, just done): either way mid-migration.
      await pollUntil(
        `${k.step} of ${id} under way`,
        async () => (await rows.inFlight(id, k.step)) || (await rows.succeeded(id, k.step)),
        Boolean,
        { timeoutMs: 120_000, intervalMs: 5 },
      );
      const name =
        k.service === 'saga-coordinator'
          ? `saga-coordinator${(await rows.leaseOwner(id)) === 'saga-coordinator-e2e' ? '' : '#2'}`
          : `${k.service}${killed.length % 2 ? '#2' : ''}`;
      const inFlight = await rows.inFlight(id, k.step);
      const pid = s.pidOf(name)!;
      expect(signal(pid, 'SIGKILL'), name).toBe(true);
      killed.push(`${name} during ${k.step}${inFlight ? '' : ' (just done)'}`);
    }
    const end = await rows.endOf(id);
    // The attempts of each step a replica died in (TimedOut first: the dead one held its command).
    for (const [i, k] of KILLS.entries())
      killed[i] += ` (attempts ${(await rows.attempts(id, k.step)).join(', ')})`;
    console.log(`[two replicas] killed ${killed.join('; ')} → ${end.phase}`);
    expect(end.phase, end.reason ?? '').toBe('Succeeded');
    expect(await runsExactlyOnce(s, 'scaled-1')).not.toBe(s.sourceVm);
  }, 300_000);
});
