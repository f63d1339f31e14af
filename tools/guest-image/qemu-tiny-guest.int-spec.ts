import { freePort, netnsUnavailable, pollUntil } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  configureMigration,
  driveMigration,
  findQemuBinary,
  isEvent,
  migrationFigures,
  QemuStartError,
  startQemu,
  type QemuProcess,
  type QmpEvent,
} from '@ccm/qmp';
import { existsSync } from 'node:fs';
import { readlink } from 'node:fs/promises';
import { createHostPair, type HostPair } from './__fixtures__/netns.js';
import { ensureGuestImage, guestKernelCommandLine, readCounters, type GuestImage } from './guest-image.js';

/**
 * @ccm/qmp against real QEMU (TCG) running the tiny guest: boot, live migration on loopback,
 * migrate_cancel, start failure. (It lives here rather than in libs/qmp because an adapter lib may not
 * import the guest-image tool.)
 * At most two QEMUs run at a time (CI has 2 cores); the guest dirties lightly (10 MB/s) because
 * bookworm's QEMU 7.2 corrupts TCG guests under heavy dirtying (FEASIBILITY §1.4).
 */

const qemuBinary = findQemuBinary();
const skipReason = qemuBinary
  ? undefined
  : 'qemu-system-x86_64 is not installed (tools/dev.sh installs qemu-system-x86 from tools/system-packages.txt)';
if (skipReason) console.warn(`[qmp+qemu] skipping the real-QEMU integration tests: ${skipReason}`);
const netnsSkipReason = skipReason ? undefined : netnsUnavailable();
if (netnsSkipReason) console.warn(`[qmp+qemu] skipping the two-namespace migration test: ${netnsSkipReason}`);

const MEMORY_MIB = 512;
const DIRTY = { dirtyMiB: 64, dirtyRateMBps: 10 };
const BOOT_TIMEOUT_MS = 40_000;

describe.skipIf(skipReason !== undefined)('QEMU under TCG with the tiny guest', () => {
  let image: GuestImage;
  const running = new Set<QemuProcess>();

  beforeAll(async () => {
    image = await ensureGuestImage();
    console.log(
      `[qmp+qemu] guest image ${image.key} ${image.cached ? 'from cache' : 'built'} in ${image.elapsedMs} ms`,
    );
  }, 300_000);
  afterAll(async () => {
    await Promise.all([...running].map((q) => q.kill()));
  });

  async function start(name: string, incoming?: string, netns?: string): Promise<QemuProcess> {
    const q = await startQemu({
      name,
      netns,
      kernel: image.kernel,
      initrd: image.initrd,
      append: guestKernelCommandLine(DIRTY),
      memoryMiB: MEMORY_MIB,
      incoming,
    });
    running.add(q);
    return q;
  }
  async function stop(...qs: QemuProcess[]): Promise<void> {
    await Promise.all(qs.map((q) => q.kill()));
    for (const q of qs) running.delete(q);
  }
  /** A destination on a free loopback port; retried if another process took the port meanwhile. */
  async function startDestination(name: string): Promise<{ dst: QemuProcess; uri: string }> {
    for (let attempt = 1; ; attempt++) {
      const uri = `tcp:127.0.0.1:${await freePort()}`;
      try {
        return { dst: await start(name, uri), uri };
      } catch (err) {
        if (attempt >= 3 || !(err instanceof QemuStartError) || !/in use/i.test(err.stderrTail)) throw err;
      }
    }
  }
  const counters = (q: QemuProcess): Promise<number[]> => readCounters(q.paths.serialLog);
  const last = (xs: number[]): number => xs[xs.length - 1] ?? 0;
  async function counterReaches(q: QemuProcess, n: number, what: string): Promise<number[]> {
    return pollUntil(
      what,
      () => counters(q),
      (c) => last(c) >= n,
      { timeoutMs: BOOT_TIMEOUT_MS, intervalMs: 100 },
    );
  }

  describe('live migration on loopback', () => {
    let src: QemuProcess;
    let dst: QemuProcess;
    let uri: string;
    let bootMs: number;

    beforeAll(async () => {
      const t0 = Date.now();
      src = await start('mig-src');
      ({ dst, uri } = await startDestination('mig-dst'));
      await counterReaches(src, 2, 'the source guest to print COUNTER 2');
      bootMs = Date.now() - t0;
    }, 120_000);
    afterAll(() => stop(src, dst));

    it('boots the guest: COUNTER on the serial console, query-status running, pid from the pidfile', async () => {
      console.log(
        `[qmp+qemu] boot to COUNTER 2: ${bootMs} ms (accelerator ${src.accel.accel}: ${src.accel.reason})`,
      );
      expect(src.accel.accel).toBe('tcg'); // kvm_pvm here and in CI: KVM must not be picked
      await expect(src.qmp.execute('query-status')).resolves.toMatchObject({
        running: true,
        status: 'running',
      });
      await expect(dst.qmp.execute('query-status')).resolves.toMatchObject({
        running: false,
        status: 'inmigrate',
      });
      expect(src.pid).toBeGreaterThan(1);
      expect(src.pid).not.toBe(dst.pid);
    });

    it('live-migrates: the destination runs on, counter continuing, and the source ends postmigrate', async () => {
      const dstResumed = dst.qmp.waitForEvent('RESUME', { timeoutMs: 60_000 });
      const srcEvents: QmpEvent[] = [];
      const off = src.qmp.onEvent((e) => srcEvents.push(e));
      const out = await driveMigration(
        src.qmp,
        { uri, downtimeLimitMs: 300, maxBandwidthBytesPerSec: 1 << 30, destination: dst.qmp },
        { timeoutMs: 60_000 },
      );
      off();
      const f = out.figures;
      console.log(
        `[qmp+qemu] migration: total ${f.totalTimeMs} ms, downtime ${f.downtimeMs} ms, setup ${f.setupTimeMs} ms, ` +
          `${(f.transferredBytes / 1e6).toFixed(1)} MB in ${f.passes} passes at ${f.mbps.toFixed(0)} Mbit/s (wall ${out.wallMs} ms)`,
      );
      expect(f.status).toBe('completed');
      expect(f.totalTimeMs).toBeGreaterThan(0);
      expect(f.downtimeMs).toBeGreaterThan(0);
      expect(f.downtimeMs).toBeLessThan(f.totalTimeMs);
      expect(f.transferredBytes).toBeGreaterThan(DIRTY.dirtyMiB << 20); // the workload's non-zero buffer
      expect(f.passes).toBeGreaterThanOrEqual(2);
      expect(srcEvents.filter((e) => isEvent(e, 'MIGRATION')).map((e) => e.data['status'])).toContain(
        'completed',
      );
      expect(srcEvents.map((e) => e.event)).toContain('STOP');
      expect(srcEvents.some((e) => isEvent(e, 'MIGRATION_PASS'))).toBe(true);
      await dstResumed;

      await expect(src.qmp.execute('query-status')).resolves.toMatchObject({ status: 'postmigrate' });
      await expect(dst.qmp.execute('query-status')).resolves.toMatchObject({ status: 'running' });
      const lastOnSource = last(await counters(src));
      const onDst = await counterReaches(dst, lastOnSource + 2, 'the destination guest to keep counting');
      console.log(`[qmp+qemu] counter: source last ${lastOnSource}, destination ${onDst.join(' ')}`);
      expect(onDst[0]).toBeGreaterThanOrEqual(lastOnSource);
      expect(onDst[0]).toBeLessThanOrEqual(lastOnSource + 2);
      expect(last(await counters(src))).toBe(lastOnSource); // the source guest stays stopped
      // query-migrate stays readable on the source after the end, with the same final figures.
      expect(migrationFigures(await src.qmp.execute('query-migrate')).totalTimeMs).toBe(f.totalTimeMs);
    });
  });

  describe('migrate_cancel', () => {
    let src: QemuProcess;
    let dst: QemuProcess;
    let uri: string;

    beforeAll(async () => {
      src = await start('cancel-src');
      ({ dst, uri } = await startDestination('cancel-dst'));
      await counterReaches(src, 2, 'the source guest to print COUNTER 2');
    }, 120_000);
    afterAll(() => stop(src, dst));

    it('mid-migration leaves the source running and makes the destination QEMU exit', async () => {
      // 8 MiB/s keeps the ~140 MB migration active for many seconds: time enough to cancel it mid-way.
      await configureMigration(src.qmp, { maxBandwidthBytesPerSec: 8 << 20, destination: dst.qmp });
      const cancelled = src.qmp.waitForEvent('MIGRATION', {
        where: (e) => e.data.status === 'cancelled',
        timeoutMs: 30_000,
      });
      await src.qmp.execute('migrate', { uri });
      const midway = await pollUntil(
        'the migration to be active and transferring',
        () => src.qmp.execute('query-migrate'),
        (i) => i.status === 'active' && (i.ram?.transferred ?? 0) > 4 << 20,
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      await src.qmp.execute('migrate_cancel');
      await cancelled;
      const after = await pollUntil(
        'query-migrate to say cancelled',
        () => src.qmp.execute('query-migrate'),
        (i) => i.status === 'cancelled',
        { timeoutMs: 10_000 },
      );
      console.log(
        `[qmp+qemu] cancelled at ${((midway.ram?.transferred ?? 0) / 1e6).toFixed(1)} MB transferred, ` +
          `${((midway.ram?.remaining ?? 0) / 1e6).toFixed(1)} MB remaining; final status ${after.status}`,
      );
      await expect(src.qmp.execute('query-status')).resolves.toMatchObject({
        running: true,
        status: 'running',
      });
      const atCancel = last(await counters(src));
      await counterReaches(src, atCancel + 2, 'the source guest to keep counting after the cancel');

      const exit = await pollUntil('the destination QEMU to exit', () => dst.exitStatus(), Boolean, {
        timeoutMs: 15_000,
        intervalMs: 50,
      });
      console.log(
        `[qmp+qemu] destination exited with code ${exit?.code}: ${dst.stderrTail().trim().split('\n').pop()}`,
      );
      expect(exit?.code).not.toBe(0);
      expect(dst.stderrTail()).toMatch(/load of migration failed/);
      expect(dst.qmp.isClosed).toBe(true);
    });
  });

  describe.skipIf(netnsSkipReason !== undefined)('live migration between two network namespaces', () => {
    let hosts: HostPair;
    let src: QemuProcess;
    let dst: QemuProcess;

    beforeAll(async () => {
      hosts = createHostPair();
      src = await start('ns-src', undefined, hosts.a.ns);
      dst = await start('ns-dst', `tcp:${hosts.b.addr}:4444`, hosts.b.ns);
      await counterReaches(src, 2, 'the source guest (namespace A) to print COUNTER 2');
    }, 120_000);
    afterAll(async () => {
      await stop(src, dst);
      hosts?.destroy();
    });

    it('runs each QEMU in its namespace (pid from the pidfile) and migrates over the veth link', async () => {
      expect(await readlink(`/proc/${src.pid}/ns/net`)).toBe(`net:[${hosts.inode(hosts.a.ns)}]`);
      expect(await readlink(`/proc/${dst.pid}/ns/net`)).toBe(`net:[${hosts.inode(hosts.b.ns)}]`);
      const out = await driveMigration(
        src.qmp,
        {
          uri: `tcp:${hosts.b.addr}:4444`,
          downtimeLimitMs: 300,
          maxBandwidthBytesPerSec: 1 << 30,
          destination: dst.qmp,
        },
        { timeoutMs: 60_000 },
      );
      const f = out.figures;
      console.log(
        `[qmp+qemu] namespace migration: total ${f.totalTimeMs} ms, downtime ${f.downtimeMs} ms, ` +
          `${(f.transferredBytes / 1e6).toFixed(1)} MB`,
      );
      const lastOnSource = last(await counters(src));
      await counterReaches(dst, lastOnSource + 2, 'the destination guest (namespace B) to keep counting');
    });
  });

  describe('shutdown', () => {
    it('quit() stops QEMU over QMP (SHUTDOWN event, exit code 0) and removes its temp run dir', async () => {
      const q = await start('quit', undefined);
      const shutdown = q.qmp.waitForEvent('SHUTDOWN', { timeoutMs: 10_000 });
      const exit = await q.quit();
      running.delete(q);
      expect(exit).toEqual({ code: 0, signal: null });
      await expect(shutdown).resolves.toMatchObject({ data: { guest: false, reason: 'host-qmp-quit' } });
      expect(existsSync(q.paths.runDir)).toBe(false);
      await expect(q.kill()).resolves.toEqual(exit); // idempotent
    });
  });

  describe('start failures', () => {
    it('a QEMU that dies at start (bad argument) gives QemuStartError with the tail of its stderr', async () => {
      const err = await startQemu({ kernel: image.kernel, extraArgs: ['-no-such-option'] }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(QemuStartError);
      const e = err as QemuStartError;
      expect(e.exitCode).toBe(1);
      expect(e.stderrTail).toMatch(/-no-such-option: invalid option/);
      expect(e.message).toContain(e.stderrTail.trim());
    });

    it('a missing QEMU binary gives QemuStartError saying it cannot run it', async () => {
      const err = await startQemu({ kernel: image.kernel, binary: '/nonexistent/qemu' }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(QemuStartError);
      expect((err as Error).message).toMatch(/cannot run \/nonexistent\/qemu: .*ENOENT/);
    });
  });
});
