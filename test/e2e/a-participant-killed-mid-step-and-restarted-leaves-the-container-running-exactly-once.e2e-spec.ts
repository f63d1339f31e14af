import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { migrationIdFor } from '@ccm/contracts';
import { pollUntil } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESTART_COORDINATOR_ENV, restartedBy, runsExactlyOnce, SagaRows } from './support/chaos.js';
import { signal, startRealContainerStack, type RealContainerStack } from './support/real-container-stack.js';

/**
 * One row per (step, service that serves it). The service is SIGKILLed while its step is in flight:
 * - `hold`: stopped (SIGSTOP) first — before the migration, or once `after` is done — so the step's
 *   command waits in it, then killed while the step is in flight (a crash with the command taken);
 * - `vm`: killed once the target VM of the step appeared on host-b (a crash in the middle of a launch);
 * - otherwise killed as soon as the step is seen in flight (long steps: a 32 MiB container's rounds).
 */
interface Row {
  step: string;
  kill: string;
  hold?: boolean;
  after?: string;
  vm?: boolean;
}
const ROWS: Row[] = [
  { step: 'attest-target', kill: 'key-broker', hold: true },
  { step: 'provision-target', kill: 'vm-lifecycle', vm: true },
  { step: 'provision-target', kill: 'host-b', vm: true },
  { step: 'release-key', kill: 'key-broker', hold: true, after: 'provision-target' },
  { step: 'pre-copy', kill: 'container-checkpoint' },
  { step: 'freeze-dump', kill: 'container-checkpoint' },
  { step: 'restore', kill: 'container-checkpoint' },
  { step: 'cut-over', kill: 'network-overlay', hold: true, after: 'join-overlay' },
  { step: 'pre-copy', kill: 'saga-coordinator' },
];
const PAGES = 8192;

describe('a participant service killed with SIGKILL in the middle of its step, restarted by the supervisor', () => {
  let s: RealContainerStack;
  let rows: SagaRows;
  const workload = (i: number) => `kill-${i}`;
  const table: string[] = [];

  beforeAll(async () => {
    s = await startRealContainerStack(
      ROWS.map((_, i) => workload(i)),
      {
        supervised: true,
        coordinatorEnv: RESTART_COORDINATOR_ENV,
      },
    );
    rows = await SagaRows.connect(s.stack.postgres.url);
    for (const [i] of ROWS.entries()) await s.runContainer(workload(i), PAGES, 2000);
  }, 300_000);

  afterAll(async () => {
    if (table.length) console.log(`[kill -9 mid-step]\n${table.join('\n')}`);
    await rows?.close();
    await s?.close();
  });

  const vmsOnB = () => {
    const dir = join(s.work, 'host-b', 'vms');
    return existsSync(dir) ? readdirSync(dir) : [];
  };

  for (const [i, row] of ROWS.entries()) {
    it(`${row.kill} killed during ${row.step}: the migration ends Succeeded or RolledBack, the container runs exactly once`, async () => {
      const key = `kill-${i}-${row.kill}-${row.step}`;
      const id = migrationIdFor(key);
      await s.destroyVmsOn('host-b'); // the rows before this one left their target VM there
      const pid = s.pidOf(row.kill)!;
      expect(pid).toBeGreaterThan(0);
      const vmsBefore = new Set(vmsOnB());
      const started = Date.now();
      if (row.hold && !row.after) signal(pid, 'SIGSTOP');
      let inFlightAtKill = false;
      try {
        const run = await s.migrate(workload(i), key, { vm: s.sourceVm });
        expect(run.code, run.stderr).toBe(0);
        if (row.hold && row.after) {
          await pollUntil(`${row.after} of ${id} done`, () => rows.succeeded(id, row.after!), Boolean, {
            timeoutMs: 90_000,
            intervalMs: 5,
          });
          signal(pid, 'SIGSTOP');
        }
        await pollUntil(`${row.step} of ${id} in flight`, () => rows.inFlight(id, row.step), Boolean, {
          timeoutMs: 90_000,
          intervalMs: 5,
        });
        if (row.vm)
          await pollUntil(
            `a new VM on host-b for ${id}`,
            () => vmsOnB().some((v) => !vmsBefore.has(v)),
            Boolean,
            { timeoutMs: 60_000, intervalMs: 5 },
          );
        inFlightAtKill = await rows.inFlight(id, row.step);
        signal(pid, 'SIGKILL');
      } finally {
        signal(pid, 'SIGCONT');
      }
      await restartedBy(s, row.kill, pid);
      const end = await pollUntil(`${id} ends`, () => rows.ended(id), Boolean, { timeoutMs: 240_000 });
      const attempts = await rows.attempts(id, row.step);
      const where = await runsExactlyOnce(s, workload(i));
      table.push(
        `${row.step.padEnd(17)} ${row.kill.padEnd(21)} in flight at kill: ${inFlightAtKill ? 'yes' : 'no '}  ` +
          `attempts: ${attempts.join(',').padEnd(28)} → ${end.phase.padEnd(10)} ` +
          `runs once at ${where === s.sourceVm ? 'source' : 'target'}  ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
      expect(['Succeeded', 'RolledBack'], end.reason ?? '').toContain(end.phase);
      expect(where === s.sourceVm).toBe(end.phase === 'RolledBack');
    }, 300_000);
  }
});
