import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type TransferView, type VmView } from '@ccm/contracts';
import { counterReaches, counters, lastOf, pollUntil } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pidAlive } from '@ccm/qmp';
import { qemuHostsUnavailable, startHostNamespaces, type HostNamespaces } from './support/host-namespaces.js';
import { ensureGuestImage, tinyGuestSpec } from '../../tools/guest-image/guest-image.js';

/**
 * Two host-agent processes, each in its own network namespace, drive real QEMU (TCG) with the tiny
 * guest: live migration (the guest's counter continues on the destination, the source ends), cancel
 * and retry, the destination's QEMU or whole host killed mid-migration (the source runs on, the failure
 * says why), an agent killed while its VM runs (re-adopted on restart), and a QEMU that dies at start.
 * One guest is booted once and moved back and forth; never more than two QEMUs run at a time.
 */
const skip = qemuHostsUnavailable();
if (skip) console.warn(`[host-agent qemu e2e] skipped: ${skip}`);

const A = 'qa';
const B = 'qb';
const VM = 'tiny1';
/** Slow enough that a ~100 MB pre-copy is still running when the test interferes. */
const SLOW_BYTES_PER_SEC = 8 << 20;

describe.skipIf(skip !== undefined)('host-agents in two namespaces live-migrate a QEMU guest', () => {
  let ns: HostNamespaces;
  let spec: { memoryMiB: number; kernel: string; initrd: string; cmdline: string };
  const figures: string[] = [];

  const vmOn = async (host: string, vmId = VM): Promise<VmView | undefined> =>
    (await ns.client.send(host, 'describe', { vmId })).vms.find((v) => v.vmId === vmId);
  const transferOn = async (host: string, id: string): Promise<TransferView | undefined> =>
    (await ns.client.send(host, 'describe', { vmId: VM })).migrations.find((m) => m.migrationId === id);
  const waitVm = (host: string, phase: string, timeoutMs = 20_000) =>
    pollUntil(
      `${VM} on ${host} to be ${phase}`,
      () => vmOn(host),
      (v) => v?.phase === phase,
      { timeoutMs, intervalMs: 100 },
    ) as Promise<VmView>;
  const waitTransfer = (
    host: string,
    id: string,
    pred: (t: TransferView) => boolean,
    what: string,
    timeoutMs = 30_000,
  ) =>
    pollUntil(
      `migration ${id} ${what}`,
      () => transferOn(host, id),
      (t) => !!t && pred(t),
      { timeoutMs, intervalMs: 50 },
    ) as Promise<TransferView>;
  const ended = (t: TransferView) => ['Completed', 'Cancelled', 'Failed'].includes(t.phase);
  const serial = (v: VmView) => join(v.runDir, 'serial.log');

  /** Starts a slow migration of VM from `src` to a fresh destination on `dst`; resolves once it moves bytes. */
  async function slowMigration(
    src: string,
    dst: string,
    id: string,
  ): Promise<{ uri: string; dstVm: VmView }> {
    const incoming = await ns.client.send(dst, 'prepare-incoming', { vmId: VM, spec, migrationId: id });
    expect(incoming.uri).toMatch(new RegExp(`^tcp:${ns.hosts[dst].addr.replace(/\./g, '\\.')}:\\d+$`));
    await ns.client.send(src, 'start-migration', {
      migrationId: id,
      vmId: VM,
      uri: incoming.uri,
      maxBandwidthBytesPerSec: SLOW_BYTES_PER_SEC,
    });
    await waitTransfer(src, id, (t) => (t.progress?.ramTransferredBytes ?? 0) > 4 << 20, 'to move 4 MiB');
    return { uri: incoming.uri, dstVm: incoming.vm };
  }

  beforeAll(async () => {
    const image = await ensureGuestImage();
    spec = tinyGuestSpec(image, { memoryMiB: 256, dirtyMiB: 32, dirtyRateMBps: 8 });
    ns = await startHostNamespaces([A, B], {
      CCM_HYPERVISOR: 'qemu',
      CCM_QEMU_ACCEL: 'tcg',
      CCM_SEV: 'off',
      CCM_MIGRATION_POLL_MS: '50',
      CCM_PROGRESS_INTERVAL_MS: '200',
    });
    await Promise.all([ns.startAgent(A), ns.startAgent(B)]);
  }, 180_000);

  afterAll(async () => {
    console.log(`[host-agent qemu e2e] figures:\n  ${figures.join('\n  ')}`);
    await ns?.close();
  });

  it('launches the guest on A, and a cancelled migration leaves it running there while B cleans up', async () => {
    const launched = await ns.client.send(A, 'launch', { vmId: VM, spec });
    expect(launched.vm).toMatchObject({ phase: 'Running', driver: 'qemu', origin: 'local' });
    await counterReaches(serial(launched.vm), 2, 60_000);

    const { dstVm } = await slowMigration(A, B, 'mq-cancel');
    const cancelled = await ns.client.send(A, 'cancel', { migrationId: 'mq-cancel', reason: 'test cancels' });
    const final = ended(cancelled.migration)
      ? cancelled.migration
      : await waitTransfer(A, 'mq-cancel', ended, 'to end');
    expect(final.phase).toBe('Cancelled');
    const onA = await waitVm(A, 'Running');
    const atCancel = lastOf(await counters(serial(onA)));
    await counterReaches(serial(onA), atCancel + 2);
    // QEMU's destination exits when the stream is cancelled; its agent records it and cleans up.
    const onB = await waitVm(B, 'Failed');
    expect(onB.reason).toMatch(/incoming migration failed/);
    expect(existsSync(join(dstVm.runDir, 'qmp.sock'))).toBe(false);
    figures.push(
      `cancelled at ${((final.progress?.ramTransferredBytes ?? 0) / 1e6).toFixed(1)} MB; B: ${onB.reason}`,
    );
  });

  it('retries: the guest moves to B, its counter continues there, and the source ends', async () => {
    const incoming = await ns.client.send(B, 'prepare-incoming', { vmId: VM, spec, migrationId: 'mq-1' });
    const src = (await vmOn(A))!;
    await ns.client.send(A, 'start-migration', {
      migrationId: 'mq-1',
      vmId: VM,
      uri: incoming.uri,
      downtimeLimitMs: 300,
    });
    const done = await waitTransfer(A, 'mq-1', ended, 'to end');
    expect(done.phase).toBe('Completed');
    const f = done.figures!;
    expect(f.totalTimeMs).toBeGreaterThan(0);
    expect(f.downtimeMs).toBeGreaterThan(0);
    expect(f.downtimeMs).toBeLessThan(f.totalTimeMs);
    figures.push(
      `qemu migration A→B: total ${f.totalTimeMs} ms, downtime ${f.downtimeMs} ms, setup ${f.setupTimeMs} ms, ` +
        `${(f.transferredBytes / 1e6).toFixed(1)} MB in ${f.passes} passes`,
    );
    const onB = await waitVm(B, 'Running');
    const lastOnA = lastOf(await counters(serial(src)));
    const onBCounters = await counterReaches(serial(onB), lastOnA + 2);
    expect(onBCounters[0]).toBeGreaterThanOrEqual(lastOnA);
    expect(onBCounters[0]).toBeLessThanOrEqual(lastOnA + 2);
    const gone = await waitVm(A, 'MigratedAway');
    expect(gone.pid).toBeUndefined();
    expect(pidAlive(src.pid!)).toBe(false);
  });

  it('re-adopts the running guest when the host-agent is killed and restarted', async () => {
    const before = (await vmOn(B))!;
    await ns.killAgent(B);
    expect(existsSync(`/proc/${before.pid}`)).toBe(true);
    await ns.startAgent(B);
    const after = await waitVm(B, 'Running');
    expect(after.pid).toBe(before.pid);
    const n = lastOf(await counters(serial(after)));
    await counterReaches(serial(after), n + 1);
    // The adopted QMP connection works: pause and resume.
    expect((await ns.client.send(B, 'pause', { vmId: VM })).vm.phase).toBe('Paused');
    expect((await ns.client.send(B, 'resume', { vmId: VM })).vm.phase).toBe('Running');
  });

  it("the destination's QEMU killed mid-migration: the source runs on and the failure says why", async () => {
    const { dstVm } = await slowMigration(B, A, 'mq-dst-qemu');
    process.kill(dstVm.pid!, 'SIGKILL');
    const failed = await waitTransfer(B, 'mq-dst-qemu', ended, 'to end');
    expect(failed.phase).toBe('Failed');
    expect(failed.errorCode).toBe('MIGRATION_FAILED');
    expect(failed.reason).toBeTruthy();
    figures.push(`destination QEMU killed: ${failed.reason}`);
    const src = await waitVm(B, 'Running');
    await counterReaches(serial(src), lastOf(await counters(serial(src))) + 2);
    const onA = await waitVm(A, 'Failed');
    expect(onA.reason).toMatch(/signal SIGKILL/);
  });

  it('the destination host (agent and QEMU) dies mid-migration: the source runs on; the restarted agent reports the VM died', async () => {
    await slowMigration(B, A, 'mq-dst-host');
    await ns.crashHost(A);
    const failed = await waitTransfer(B, 'mq-dst-host', ended, 'to end');
    expect(failed.phase).toBe('Failed');
    expect(failed.reason).toBeTruthy();
    figures.push(`destination host crashed: ${failed.reason}`);
    const src = await waitVm(B, 'Running');
    await counterReaches(serial(src), lastOf(await counters(serial(src))) + 2);
    await ns.startAgent(A);
    const onA = await waitVm(A, 'Failed');
    expect(onA.reason).toMatch(/ended while the host-agent was down/);
  });

  it('a QEMU that dies at start gives a typed error with its stderr', async () => {
    const err = await ns.client
      .send(A, 'launch', { vmId: 'broken', spec: { ...spec, kernel: '/etc/hostname' } })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'HYPERVISOR_START_FAILED' });
    expect(JSON.stringify((err as { details?: unknown }).details)).toMatch(/kernel|linux/i);
    expect((await vmOn(A, 'broken'))?.phase).toBe('Failed');
  });

  it('destroys the guest', async () => {
    const v = await ns.client.send(B, 'destroy', { vmId: VM });
    expect(v.vm.phase).toBe('Destroyed');
    expect(v.vm.pid).toBeUndefined();
  });
});
