import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pollUntil, REPO_ROOT } from '@ccm/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { qemuHostsUnavailable } from './support/host-namespaces.js';
import { processesLeft, processesOf, runTool } from './support/process-table.js';

/** The VM demo runs its two hosts as network namespaces with QEMU. */
const skip = qemuHostsUnavailable();
if (skip) console.warn(`[failed demo e2e] skipped: ${skip}`);

const DEMO = join(REPO_ROOT, 'dist/tools/demo/main.js');

/**
 * The demo when things go wrong: a migration that fails (the destination's QEMU dies) and a SIGTERM
 * while the VM runs. Either way it exits non-zero with one line saying why, and nothing it started —
 * services, NATS, Postgres, the VMs' QEMUs (which host-agents leave running) — is left in the process
 * table. Processes are found by a tag in their inherited environment or the state dir on their command line.
 */
describe.skipIf(skip !== undefined)('a failed or stopped demo', () => {
  let state: string | undefined;
  afterEach(async () => {
    if (state) await rm(state, { recursive: true, force: true });
  });

  it('whose destination dies exits 1 with one line saying why, and leaves no process', async () => {
    state = await mkdtemp(join(tmpdir(), 'ccm-demo-fail-'));
    const tag = randomUUID();
    const demo = runTool(DEMO, ['vm', '--state', state, '--fail-destination'], tag);
    const { code } = await demo.exited;
    const failures = demo
      .out()
      .split('\n')
      .filter((l) => l.startsWith('ccm demo failed:'));
    console.log(failures.join('\n'));
    expect(code).toBe(1);
    expect(failures).toHaveLength(1);
    // the coordinator's saga rolls back: the source VM ran on until the demo ended it
    expect(failures[0]).toMatch(/^ccm demo failed: migration mig-\S+ ended RolledBack: /);
    expect(demo.out()).toContain("killed host-b's QEMU");
    expect(demo.out()).toMatch(/│ RolledBack after /);
    expect(await processesLeft(tag, state)).toEqual([]);
  }, 240_000);

  it('stopped with SIGTERM while its VM runs exits 143 and leaves no process', async () => {
    state = await mkdtemp(join(tmpdir(), 'ccm-demo-term-'));
    const tag = randomUUID();
    const demo = runTool(DEMO, ['vm', '--state', state], tag);
    let ended = false;
    void demo.exited.then(() => (ended = true));
    await pollUntil(
      'the demo VM running on host-a',
      () => ended || /runs on host-a/.test(demo.out()),
      Boolean,
      { timeoutMs: 180_000, intervalMs: 100 },
    );
    expect(ended).toBe(false);
    const qemus = (await processesOf(tag, state)).filter((p) => /qemu-system|vm\.pid/.test(p.cmdline));
    expect(qemus.length).toBeGreaterThan(0);
    process.kill(demo.pid, 'SIGTERM');
    const { code } = await demo.exited;
    expect(code).toBe(143);
    expect(demo.out()).toContain('ccm demo: SIGTERM received, stopping everything it started');
    expect(await processesLeft(tag, state)).toEqual([]);
  }, 240_000);
});
