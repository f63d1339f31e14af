import { join } from 'node:path';
import { type TransferView, type VmView } from '@ccm/contracts';
import { pollUntil } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { counterReaches, startSimHosts, type InProcessHosts } from './__fixtures__/agents.js';
import { lastCounter } from './saga/guest-progress.js';

/**
 * Post-copy on the simulated hypervisor (it models QEMU's state machine: `postcopy-ram`,
 * `migrate-start-postcopy`, a pause before the destination runs, `postcopy-active`, and a source
 * that never resumes after it). A guest dirtying 40 MB/s behind a 4 MiB/s cap cannot converge.
 */
const A = 'pc-a';
const B = 'pc-b';
const HOT = { memoryMiB: 32, cmdline: 'ccm.dirty_mb=8 ccm.dirty_rate=40' };
const SLOW = { maxBandwidthBytesPerSec: 4 << 20, downtimeLimitMs: 20, stallTimeoutMs: 1_000 };

describe('post-copy with the simulated hypervisor', () => {
  let h: InProcessHosts;
  const vmOn = async (host: string, vmId: string): Promise<VmView | undefined> =>
    (await h.client.send(host, 'describe', { vmId })).vms.find((v) => v.vmId === vmId);
  const transfer = async (host: string, id: string): Promise<TransferView | undefined> =>
    (await h.client.send(host, 'describe', {})).migrations.find((m) => m.migrationId === id);
  const phaseOf = (host: string, id: string, phases: string[]) =>
    pollUntil(
      `migration ${id} ${phases.join('|')}`,
      () => transfer(host, id),
      (t) => !!t && phases.includes(t.phase),
      {
        timeoutMs: 30_000,
        intervalMs: 50,
      },
    ) as Promise<TransferView>;
  const serial = (v: VmView) => join(v.runDir, 'serial.log');

  beforeAll(async () => {
    h = await startSimHosts([A, B]);
  });
  afterAll(() => h?.close());

  async function launchAndStart(vmId: string, id: string, postcopy: boolean): Promise<VmView> {
    const launched = await h.client.send(A, 'launch', { vmId, spec: HOT });
    await counterReaches(serial(launched.vm), 1);
    const incoming = await h.client.send(B, 'prepare-incoming', {
      vmId,
      spec: HOT,
      migrationId: id,
      ...(postcopy ? { allowPostcopy: true } : {}),
    });
    await h.client.send(A, 'start-migration', {
      migrationId: id,
      vmId,
      uri: incoming.uri,
      pauseBeforeSwitchover: true,
      holdSource: true,
      ...SLOW,
      ...(postcopy ? { allowPostcopy: true } : {}),
    });
    return launched.vm;
  }

  it('switches a stalled pre-copy to post-copy, pauses before the point of no return, then completes; the source is not held', async () => {
    const src = await launchAndStart('pc1', 'pc-m1', true);
    const paused = await phaseOf(A, 'pc-m1', ['AwaitingSwitchover', 'Completed', 'Failed', 'Cancelled']);
    expect(paused.phase, paused.reason).toBe('AwaitingSwitchover');
    expect(paused.postcopy).toMatchObject({ reason: expect.stringContaining('pre-copy does not converge') });
    expect(paused.postcopy?.committedAt).toBeUndefined();

    const cont = (await h.client.send(A, 'continue', { migrationId: 'pc-m1' })).migration;
    expect(cont.postcopy?.committedAt).toBeDefined();
    await expect(h.client.send(A, 'cancel', { migrationId: 'pc-m1' })).rejects.toMatchObject({
      code: 'PAST_POINT_OF_NO_RETURN',
    });
    expect((await phaseOf(A, 'pc-m1', ['Completed', 'Failed', 'Cancelled'])).phase).toBe('Completed');
    await pollUntil(
      'the source ended',
      () => vmOn(A, 'pc1'),
      (v) => v?.phase === 'MigratedAway',
    );
    const dst = await pollUntil(
      'pc1 running on B',
      () => vmOn(B, 'pc1'),
      (v) => v?.phase === 'Running',
    );
    await counterReaches(serial(dst!), (await lastCounter(serial(src))) + 1);

    // It moves on without post-copy: the capability it arrived with is not left on (the destination
    // here does not have it, and refuses a source that advises post-copy, as QEMU does).
    const incoming = await h.client.send(A, 'prepare-incoming', {
      vmId: 'pc1',
      spec: HOT,
      migrationId: 'pc-m1b',
    });
    await h.client.send(B, 'start-migration', { migrationId: 'pc-m1b', vmId: 'pc1', uri: incoming.uri });
    const back = await phaseOf(B, 'pc-m1b', ['Completed', 'Failed', 'Cancelled']);
    expect(back.phase, back.reason).toBe('Completed');
  });

  it('a cancel while paused after the post-copy request, before the destination runs, resumes the source', async () => {
    const src = await launchAndStart('pc2', 'pc-m2', true);
    await phaseOf(A, 'pc-m2', ['AwaitingSwitchover']);
    const c = (await h.client.send(A, 'cancel', { migrationId: 'pc-m2' })).migration;
    expect(['Cancelling', 'Cancelled']).toContain(c.phase);
    expect((await phaseOf(A, 'pc-m2', ['Completed', 'Failed', 'Cancelled'])).phase).toBe('Cancelled');
    await pollUntil(
      'pc2 running on A',
      () => vmOn(A, 'pc2'),
      (v) => v?.phase === 'Running',
    );
    await counterReaches(serial(src), (await lastCounter(serial(src))) + 1);
  });

  it('without post-copy allowed the same guest fails MIGRATION_STALLED and runs on at the source', async () => {
    const src = await launchAndStart('pc3', 'pc-m3', false);
    const failed = await phaseOf(A, 'pc-m3', ['Completed', 'Failed', 'Cancelled']);
    expect(failed).toMatchObject({ phase: 'Failed', errorCode: 'MIGRATION_STALLED' });
    expect(failed.postcopy).toBeUndefined();
    await counterReaches(serial(src), (await lastCounter(serial(src))) + 1);
  });
});
