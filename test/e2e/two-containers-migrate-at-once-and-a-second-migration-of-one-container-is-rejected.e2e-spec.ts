import { migrationIdFor, type MigrationDetail } from '@ccm/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runsExactlyOnce, SagaRows } from './support/chaos.js';
import { startRealContainerStack, type RealContainerStack } from './support/real-container-stack.js';

/** The CLI's exit code for a request the coordinator refused (apps/cli ExitCode.Refused). */
const REFUSED = 4;

describe('two migrations at once between the same hosts, and a second migration of a container already moving', () => {
  let s: RealContainerStack;
  let rows: SagaRows;

  beforeAll(async () => {
    s = await startRealContainerStack(['pair-1', 'pair-2', 'solo']);
    rows = await SagaRows.connect(s.stack.postgres.url);
    await s.runContainer('pair-1', 1024, 1000);
    await s.runContainer('pair-2', 1024, 1000);
    await s.runContainer('solo', 8192, 2000);
  }, 300_000);

  afterAll(async () => {
    await rows?.close();
    await s?.close();
  });

  const migrate = (workload: string, key: string, follow: boolean) => s.migrate(workload, key, { follow });

  it('two different containers migrated host-a → host-b at the same time both end Succeeded, each in its own new VM, each running once', async () => {
    const runs = await Promise.all([migrate('pair-1', 'pair-1', true), migrate('pair-2', 'pair-2', true)]);
    for (const r of runs) expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const details = await Promise.all(
      ['pair-1', 'pair-2'].map((k) => s.ccmJson<MigrationDetail>(['migration', migrationIdFor(k)])),
    );
    for (const d of details) expect(d.phase, d.reason).toBe('Succeeded');
    // They ran side by side (not queued one after the other): each was admitted before the other ended.
    const [a, b] = details.map((d) => ({ start: Date.parse(d.admittedAt!), end: Date.parse(d.endedAt!) }));
    expect(a.start < b.end && b.start < a.end).toBe(true);
    const at = [await runsExactlyOnce(s, 'pair-1'), await runsExactlyOnce(s, 'pair-2')];
    expect(at).not.toContain(s.sourceVm);
    expect(new Set(at).size).toBe(2);
    console.log(`[two at once] ${runs.map((r) => r.stdout.trim().split('\n').at(-1)).join(' | ')}`);
  }, 240_000);

  it('a second migration of a container while its first runs is refused (exit 4, `Rejected` naming the first); the first ends Succeeded and the container runs once', async () => {
    await s.destroyVmsOn('host-b'); // the pair's target VMs take host-b's capacity
    const first = migrationIdFor('solo-1');
    const started = await migrate('solo', 'solo-1', false);
    expect(started.code, started.stderr).toBe(0);
    await rows.inFlightAny(first);
    const second = await migrate('solo', 'solo-2', true);
    expect(second.code, `${second.stdout}\n${second.stderr}`).toBe(REFUSED);
    // Followed from its `rejected` event, or looked up already ended (the refusal is immediate).
    expect(second.stdout).toMatch(
      new RegExp(
        `(rejected|already ended Rejected): container solo already has an active migration ${first}`,
      ),
    );
    const d2 = await s.ccmJson<MigrationDetail>(['migration', migrationIdFor('solo-2')]);
    expect(d2.phase).toBe('Rejected');
    expect(d2.reason).toContain(first);
    // The first goes on untouched.
    const end = await rows.endOf(first);
    expect(end.phase, end.reason ?? '').toBe('Succeeded');
    expect(await runsExactlyOnce(s, 'solo')).not.toBe(s.sourceVm);
  }, 240_000);
});
