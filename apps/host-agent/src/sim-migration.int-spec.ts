import { join } from 'node:path';
import { type DescribeReply, type TransferView } from '@ccm/contracts';
import { pollUntil } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  counterReaches,
  counters,
  startSimHosts,
  lastOf,
  type InProcessHosts,
} from './__fixtures__/agents.js';

/**
 * Two host-agents in this process with the simulated hypervisor: launch, live migration with real
 * pre-copy over TCP on loopback, cancel and retry, and convergence control (a dirty rate the bandwidth
 * carries converges; one it cannot carry stalls and fails with MIGRATION_STALLED, never a hang).
 */
const A = 'sim-a';
const B = 'sim-b';
const SPEC = { memoryMiB: 32, cmdline: 'ccm.dirty_mb=4 ccm.dirty_rate=4' };

describe('host-agents with the simulated hypervisor', () => {
  let h: InProcessHosts;
  const describeHost = (host: string): Promise<DescribeReply> => h.client.send(host, 'describe', {});
  const transfer = async (host: string, id: string): Promise<TransferView | undefined> =>
    (await describeHost(host)).migrations.find((m) => m.migrationId === id);
  const settled = (host: string, id: string, timeoutMs = 20_000) =>
    pollUntil(
      `migration ${id} to end`,
      () => transfer(host, id),
      (t) => !!t && ['Completed', 'Cancelled', 'Failed'].includes(t.phase),
      {
        timeoutMs,
        intervalMs: 50,
      },
    ) as Promise<TransferView>;

  /** Prepares vm1's destination on `dst` and starts migrating it there from `src`. */
  async function migrateVm1(
    src: string,
    dst: string,
    migrationId: string,
    extra: Record<string, unknown>,
  ): Promise<void> {
    const incoming = await h.client.send(dst, 'prepare-incoming', { vmId: 'vm1', spec: SPEC, migrationId });
    await h.client.send(src, 'start-migration', { migrationId, vmId: 'vm1', uri: incoming.uri, ...extra });
  }

  beforeAll(async () => {
    h = await startSimHosts([A, B]);
  });
  afterAll(() => h?.close());

  it('reports the host platform', async () => {
    const p = await h.client.send(A, 'platform', {});
    expect(p.capabilities).toMatchObject({ driver: 'sim', accelerator: 'sim', sevMode: 'none', sev: false });
  });

  it('launches a VM whose guest runs, and a repeated launch answers the same', async () => {
    const first = await h.client.send(A, 'launch', { vmId: 'vm1', spec: SPEC }, { key: 'launch-vm1' });
    expect(first.vm).toMatchObject({ vmId: 'vm1', phase: 'Running', driver: 'sim', origin: 'local' });
    expect(first.vm.pid).toBeGreaterThan(0);
    await counterReaches(join(first.vm.runDir, 'serial.log'), 2);
    const again = await h.client.send(A, 'launch', { vmId: 'vm1', spec: SPEC });
    expect(again.vm.pid).toBe(first.vm.pid);
    await expect(
      h.client.send(A, 'launch', { vmId: 'vm1', spec: { ...SPEC, memoryMiB: 64 } }),
    ).rejects.toMatchObject({
      code: 'CONFLICT',
    });
  });

  it('live-migrates it to the other host: the counter continues there and the source ends', async () => {
    const incoming = await h.client.send(B, 'prepare-incoming', {
      vmId: 'vm1',
      spec: SPEC,
      migrationId: 'm1',
    });
    expect(incoming.vm.phase).toBe('Incoming');
    expect(incoming.uri).toMatch(/^tcp:127\.0\.0\.1:\d+$/);
    const srcLog = join((await describeHost(A)).vms.find((v) => v.vmId === 'vm1')!.runDir, 'serial.log');
    const started = await h.client.send(A, 'start-migration', {
      migrationId: 'm1',
      vmId: 'vm1',
      uri: incoming.uri,
    });
    expect(started.migration.phase).toBe('Active');
    const done = await settled(A, 'm1');
    expect(done.phase).toBe('Completed');
    expect(done.figures!.totalTimeMs).toBeGreaterThan(0);
    expect(done.figures!.downtimeMs).toBeGreaterThan(0);
    console.log(
      `[host-agent sim] migration: total ${done.figures!.totalTimeMs} ms, downtime ${done.figures!.downtimeMs} ms`,
    );
    const onB = await pollUntil(
      'vm1 to run on B',
      async () => (await describeHost(B)).vms.find((v) => v.vmId === 'vm1'),
      (v) => v?.phase === 'Running',
    );
    const srcLast = lastOf(await counters(srcLog));
    const dst = await counterReaches(join(onB!.runDir, 'serial.log'), srcLast + 2);
    expect(dst[0]).toBe(srcLast + 1);
    const onA = (await describeHost(A)).vms.find((v) => v.vmId === 'vm1')!;
    expect(onA.phase).toBe('MigratedAway');
    expect(onA.pid).toBeUndefined();
  });

  it('pauses before switch-over (guest stopped) until continue, then completes', async () => {
    const reached = h.nc.subscribe('ccm.evt.transfer.m2.switchover-reached', { max: 1 });
    await migrateVm1(B, A, 'm2', { pauseBeforeSwitchover: true });
    const waiting = await pollUntil(
      'm2 to wait before switch-over',
      () => transfer(B, 'm2'),
      (t) => t?.phase === 'AwaitingSwitchover',
    );
    expect(waiting!.progress?.status).toBe('pre-switchover');
    for await (const m of reached) expect(m.subject).toBe('ccm.evt.transfer.m2.switchover-reached');
    const cont = await h.client.send(B, 'continue', { migrationId: 'm2' });
    expect(['SwitchingOver', 'Completed']).toContain(cont.migration.phase);
    expect((await settled(B, 'm2')).phase).toBe('Completed');
    // A repeated continue of a completed migration answers with it.
    expect((await h.client.send(B, 'continue', { migrationId: 'm2' })).migration.phase).toBe('Completed');
    const onA = await pollUntil(
      'vm1 to run on A',
      async () => (await describeHost(A)).vms.find((v) => v.vmId === 'vm1'),
      (v) => v?.phase === 'Running',
    );
    await counterReaches(
      join(onA!.runDir, 'serial.log'),
      lastOf(await counters(join(onA!.runDir, 'serial.log'))) + 1,
    );
  });

  it('a pause before switch-over longer than allowed is cancelled: SWITCHOVER_TIMEOUT, and the source runs on', async () => {
    await migrateVm1(A, B, 'm3', { pauseBeforeSwitchover: true, switchoverTimeoutMs: 300 });
    const failed = await settled(A, 'm3');
    expect(failed).toMatchObject({ phase: 'Failed', errorCode: 'SWITCHOVER_TIMEOUT' });
    const onA = (await describeHost(A)).vms.find((v) => v.vmId === 'vm1')!;
    expect(onA.phase).toBe('Running');
    const log = join(onA.runDir, 'serial.log');
    await counterReaches(log, lastOf(await counters(log)) + 2);
    await expect(h.client.send(A, 'continue', { migrationId: 'm3' })).rejects.toMatchObject({
      code: 'CONFLICT',
    });
  });
});
