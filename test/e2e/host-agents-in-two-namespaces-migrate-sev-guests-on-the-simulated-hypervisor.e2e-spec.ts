import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TransferView, type VmView } from '@ccm/contracts';
import { QmpClient } from '@ccm/qmp';
import { SevBadMeasurementError, startSevLaunch, verifySevChain } from '@ccm/sev';
import { LabAuthority } from '@ccm/sev-emulator';
import {
  chainFromPlatform,
  counterReaches,
  counters,
  expectedLaunchDigest,
  lastOf,
  pollUntil,
} from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  namespacesUnavailable,
  startHostNamespaces,
  type HostNamespaces,
} from './support/host-namespaces.js';
import { startTamperProxy } from './support/tamper-proxy.js';

/**
 * Two host-agent processes in two network namespaces with the simulated hypervisor and the software
 * secure processor (one lab endorses both hosts): an attested launch checked with libs/sev end to end,
 * live migration of the SEV guest with every page sealed by SEND_UPDATE_DATA, cancel and retry, a
 * tampered page refused, the destination killed mid-migration, an agent restart that re-adopts, and
 * convergence control (within the bandwidth, above it: stall detection, and auto-converge).
 */
const skip = namespacesUnavailable();
if (skip) console.warn(`[host-agent sim e2e] skipped: ${skip}`);

const A = 'sa';
const B = 'sb';
const VM = 'svm';
/** NODBG: the host may not decrypt guest memory with DBG_DECRYPT. */
const POLICY = 0x01;
const SECRET_GPA = 0x1000;

describe.skipIf(skip !== undefined)(
  'host-agents in two namespaces migrate SEV guests on the simulated hypervisor',
  () => {
    let ns: HostNamespaces;
    let lab: LabAuthority;
    let work: string;
    let spec: { memoryMiB: number; kernel: string; initrd: string; cmdline: string };
    const secret = Buffer.concat([Buffer.from('ccm-vm-identity:'), randomBytes(32)]);
    const seen: Array<{ subject: string; data: string }> = [];
    const figures: string[] = [];

    const vmOn = async (host: string, vmId = VM): Promise<VmView | undefined> =>
      (await ns.client.send(host, 'describe', { vmId })).vms.find((v) => v.vmId === vmId);
    const waitVm = (host: string, phase: string, vmId = VM) =>
      pollUntil(
        `${vmId} on ${host} to be ${phase}`,
        () => vmOn(host, vmId),
        (v) => v?.phase === phase,
        {
          timeoutMs: 20_000,
          intervalMs: 50,
        },
      ) as Promise<VmView>;
    const transferOn = async (host: string, id: string): Promise<TransferView | undefined> =>
      (await ns.client.send(host, 'describe', { all: true })).migrations.find((m) => m.migrationId === id);
    const waitTransfer = (host: string, id: string, pred: (t: TransferView) => boolean, what: string) =>
      pollUntil(
        `migration ${id} ${what}`,
        () => transferOn(host, id),
        (t) => !!t && pred(t),
        {
          timeoutMs: 30_000,
          intervalMs: 50,
        },
      ) as Promise<TransferView>;
    const ended = (t: TransferView) => ['Completed', 'Cancelled', 'Failed'].includes(t.phase);
    // The registration is published through the outbox, after the agent answers describe: wait for
    // the one published after `since` (a count of events seen before the restart).
    const registeredAfter = (host: string, since: number) =>
      pollUntil(
        `${host} to publish its registration`,
        () =>
          Promise.resolve(
            seen
              .slice(since)
              .filter((e) => e.subject === `ccm.evt.host.${host}.registered`)
              .pop(),
          ),
        (e) => !!e,
        { timeoutMs: 20_000, intervalMs: 50 },
      ).then((e) => JSON.parse(e!.data).data as { adopted: string[]; died: string[] });
    const serial = (v: VmView) => join(v.runDir, 'serial.log');
    const chainOf = async (host: string) => (await ns.client.send(host, 'platform', {})).sev!.chain;
    /** What a program inside the guest reads at `gpa` (the simulator's in-guest window). */
    async function guestRead(v: VmView, gpa: number, size: number): Promise<Buffer> {
      const qmp = await QmpClient.connect(join(v.runDir, 'qmp.sock'));
      try {
        const r = (await qmp.executeUnchecked('x-ccm-guest-read', { gpa, size })) as { data: string };
        return Buffer.from(r.data, 'base64');
      } finally {
        await qmp.close();
      }
    }
    async function keepsCounting(host: string, vmId = VM): Promise<void> {
      const v = await waitVm(host, 'Running', vmId);
      await counterReaches(serial(v), lastOf(await counters(serial(v))) + 2);
    }
    async function migrate(
      src: string,
      dst: string,
      id: string,
      o: {
        vmId?: string;
        sev?: boolean;
        uri?: (real: string) => Promise<string>;
        extra?: Record<string, unknown>;
      } = {},
    ) {
      const vmId = o.vmId ?? VM;
      const vm = (await vmOn(src, vmId))!;
      const incoming = await ns.client.send(dst, 'prepare-incoming', {
        vmId,
        spec: vm.spec,
        migrationId: id,
        ...(o.sev === false ? {} : { sev: { policy: POLICY } }),
      });
      const uri = o.uri ? await o.uri(incoming.uri) : incoming.uri;
      await ns.client.send(src, 'start-migration', {
        migrationId: id,
        vmId,
        uri,
        ...(o.sev === false ? {} : { sev: await chainOf(dst) }),
        ...o.extra,
      });
      return incoming;
    }

    /** Launches an ordinary (non-SEV) 32 MiB guest on A and starts migrating it to B. */
    async function launchPlainAndMigrate(
      vmId: string,
      cmdline: string,
      id: string,
      extra: Record<string, unknown>,
    ) {
      await ns.client.send(A, 'launch', { vmId, spec: { memoryMiB: 32, cmdline } });
      await migrate(A, B, id, { vmId, sev: false, extra });
    }

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'ccm-sim-e2e-'));
      lab = await LabAuthority.create(join(work, 'lab'), { rsaBits: 2048 });
      const kernel = join(work, 'vmlinux');
      const initrd = join(work, 'initrd');
      await writeFile(kernel, randomBytes(96 * 1024));
      await writeFile(initrd, randomBytes(40 * 1024));
      spec = { memoryMiB: 32, kernel, initrd, cmdline: 'console=ttyS0 ccm.dirty_mb=4 ccm.dirty_rate=4' };
      ns = await startHostNamespaces([A, B], {
        CCM_HYPERVISOR: 'sim',
        CCM_SEV: 'emulated',
        CCM_SEV_LAB_DIR: join(work, 'lab'),
        CCM_MIGRATION_POLL_MS: '50',
        CCM_PROGRESS_INTERVAL_MS: '100',
        CCM_HEARTBEAT_INTERVAL_MS: '500',
      });
      const sub = ns.nc.subscribe('ccm.evt.>');
      void (async () => {
        for await (const m of sub) seen.push({ subject: m.subject, data: m.string() });
      })();
      await Promise.all([ns.startAgent(A), ns.startAgent(B)]);
    }, 120_000);

    afterAll(async () => {
      console.log(`[host-agent sim e2e] figures:\n  ${figures.join('\n  ')}`);
      await ns?.close();
      await rm(work, { recursive: true, force: true });
    });

    it('attested launch: the chain verifies to the lab, the measurement with libs/sev, and the secret lands in guest memory', async () => {
      const platform = await ns.client.send(A, 'platform', {});
      expect(platform.capabilities).toMatchObject({ driver: 'sim', sevMode: 'emulated', sev: true });
      const chain = chainFromPlatform(platform);
      expect(verifySevChain(chain).ok).toBe(false); // a lab root is not AMD's
      expect(verifySevChain(chain, { extraRoots: lab.trustAnchors().sevExtraRoots }).ok).toBe(true);

      const launch = startSevLaunch({ pdh: chain.pdh, policy: POLICY });
      const inputs = launch.qemuInputs();
      const reply = await ns.client.send(A, 'launch', {
        vmId: VM,
        spec,
        sev: { policy: POLICY, godh: inputs.dhCertBase64, session: inputs.sessionBase64 },
      });
      expect(reply.vm.phase).toBe('Paused');
      const expected = await expectedLaunchDigest(spec);
      const blob = Buffer.from(reply.measurement!.blob, 'base64');
      expect(() =>
        launch.verifyMeasurement(blob, { digest: Buffer.alloc(32), platform: reply.measurement!.platform }),
      ).toThrow(SevBadMeasurementError);
      const measured = launch.verifyMeasurement(blob, {
        digest: expected,
        platform: reply.measurement!.platform,
      });
      const packet = measured.sealSecret(secret);
      const injected = await ns.client.send(A, 'inject-secret', {
        vmId: VM,
        packetHeader: packet.qmp['packet-header'],
        secret: packet.qmp.secret,
      });
      expect(injected.vm.sev).toMatchObject({ policy: POLICY, secretInjected: true });
      const running = (await ns.client.send(A, 'resume', { vmId: VM })).vm;
      expect(running.phase).toBe('Running');
      await counterReaches(serial(running), 2);
      expect(await guestRead(running, SECRET_GPA, secret.length)).toEqual(secret);
    });

    it('live-migrates the SEV guest to B: every page sealed, counter and secret continue there, A ends', async () => {
      const src = (await vmOn(A))!;
      await migrate(A, B, 'ms-1');
      const done = await waitTransfer(A, 'ms-1', ended, 'to end');
      expect(done.phase).toBe('Completed');
      const f = done.figures!;
      expect(f.totalTimeMs).toBeGreaterThan(0);
      expect(f.downtimeMs).toBeGreaterThan(0);
      figures.push(
        `sim SEV migration A→B: total ${f.totalTimeMs} ms, downtime ${f.downtimeMs} ms, setup ${f.setupTimeMs} ms, ` +
          `${(f.transferredBytes / 1e6).toFixed(1)} MB in ${f.passes} passes`,
      );
      const onB = await waitVm(B, 'Running');
      const last = lastOf(await counters(serial(src)));
      const onBCounters = await counterReaches(serial(onB), last + 2);
      expect(onBCounters[0]).toBe(last + 1);
      expect(await guestRead(onB, SECRET_GPA, secret.length)).toEqual(secret);
      expect((await waitVm(A, 'MigratedAway')).pid).toBeUndefined();
    });

    it('cancel mid-migration: the source runs on, the destination is cleaned up, and a retry works', async () => {
      await migrate(B, A, 'ms-cancel', { extra: { maxBandwidthBytesPerSec: 1 << 20 } });
      await waitTransfer(
        B,
        'ms-cancel',
        (t) => (t.progress?.ramTransferredBytes ?? 0) > 256 << 10,
        'to move 256 KiB',
      );
      const c = await ns.client.send(B, 'cancel', { migrationId: 'ms-cancel' });
      expect(['Cancelling', 'Cancelled']).toContain(c.migration.phase);
      expect((await waitTransfer(B, 'ms-cancel', ended, 'to end')).phase).toBe('Cancelled');
      await keepsCounting(B);
      const dst = await waitVm(A, 'Failed');
      expect(dst.reason).toMatch(/incoming migration failed/);
      await migrate(B, A, 'ms-retry');
      const retry = await waitTransfer(B, 'ms-retry', ended, 'to end');
      expect([retry.phase, retry.reason]).toEqual(['Completed', undefined]);
      await keepsCounting(A);
      expect(await guestRead((await vmOn(A))!, SECRET_GPA, secret.length)).toEqual(secret);
    });

    it('a page packet tampered in transit is refused by RECEIVE_UPDATE_DATA: the migration fails, the source runs on', async () => {
      let proxy: Awaited<ReturnType<typeof startTamperProxy>> | undefined;
      try {
        await migrate(A, B, 'ms-tamper', {
          uri: async (real) => {
            const [, host, port] = /^tcp:(.+):(\d+)$/.exec(real)!;
            proxy = await startTamperProxy(ns.bridgeAddr, { host: host, port: Number(port) }, 40);
            return proxy.uri;
          },
        });
        const failed = await waitTransfer(A, 'ms-tamper', ended, 'to end');
        expect(proxy!.stats.tampered).toBe(true);
        expect(failed.phase).toBe('Failed');
        expect(failed.reason).toMatch(/refused the stream.*RECEIVE_UPDATE_DATA: BAD_MEASUREMENT/);
        figures.push(`tampered page: ${failed.reason}`);
        await keepsCounting(A);
        expect((await waitVm(B, 'Failed')).reason).toMatch(/BAD_MEASUREMENT/);
      } finally {
        await proxy?.close();
      }
    });

    it("the destination's VM process killed mid-migration: the source runs on and the failure says why", async () => {
      const incoming = await migrate(A, B, 'ms-kill-vm', { extra: { maxBandwidthBytesPerSec: 1 << 20 } });
      await waitTransfer(
        A,
        'ms-kill-vm',
        (t) => (t.progress?.ramTransferredBytes ?? 0) > 256 << 10,
        'to move 256 KiB',
      );
      process.kill(incoming.vm.pid!, 'SIGKILL');
      const failed = await waitTransfer(A, 'ms-kill-vm', ended, 'to end');
      expect(failed).toMatchObject({ phase: 'Failed', errorCode: 'MIGRATION_FAILED' });
      figures.push(`destination VM killed: ${failed.reason}`);
      await keepsCounting(A);
      expect((await waitVm(B, 'Failed')).reason).toMatch(/SIGKILL/);
    });

    it('the destination host dies mid-migration: the source runs on; the restarted agent reports the VM died', async () => {
      await migrate(A, B, 'ms-crash', { extra: { maxBandwidthBytesPerSec: 1 << 20 } });
      await waitTransfer(
        A,
        'ms-crash',
        (t) => (t.progress?.ramTransferredBytes ?? 0) > 256 << 10,
        'to move 256 KiB',
      );
      await ns.crashHost(B);
      const since = seen.length;
      const failed = await waitTransfer(A, 'ms-crash', ended, 'to end');
      expect(failed.phase).toBe('Failed');
      figures.push(`destination host crashed: ${failed.reason}`);
      await keepsCounting(A);
      await ns.startAgent(B);
      expect((await waitVm(B, 'Failed')).reason).toMatch(/ended while the host-agent was down/);
      expect((await registeredAfter(B, since)).died).toContain(VM);
    });

    it('a host-agent killed while its VM runs re-adopts it on restart', async () => {
      const before = (await vmOn(A))!;
      await ns.killAgent(A);
      const since = seen.length;
      await ns.startAgent(A);
      const after = await waitVm(A, 'Running');
      expect(after.pid).toBe(before.pid);
      await keepsCounting(A);
      expect((await registeredAfter(A, since)).adopted).toContain(VM);
      expect(await guestRead(after, SECRET_GPA, secret.length)).toEqual(secret);
    });

    it('a source host-agent killed mid-migration picks the migration up on restart and records its end', async () => {
      await launchPlainAndMigrate('busy', 'ccm.dirty_mb=8 ccm.dirty_rate=2', 'ms-agent-restart', {
        maxBandwidthBytesPerSec: 4 << 20,
      });
      await waitTransfer(
        A,
        'ms-agent-restart',
        (t) => (t.progress?.ramTransferredBytes ?? 0) > 256 << 10,
        'to move 256 KiB',
      );
      await ns.killAgent(A);
      await ns.startAgent(A);
      const done = await waitTransfer(A, 'ms-agent-restart', ended, 'to end');
      expect(done.phase).toBe('Completed');
      expect(done.figures!.totalTimeMs).toBeGreaterThan(0);
      expect((await waitVm(A, 'MigratedAway', 'busy')).pid).toBeUndefined();
      await keepsCounting(B, 'busy');
    });

    describe('convergence control', () => {
      const hot = { memoryMiB: 32, cmdline: 'ccm.dirty_mb=8 ccm.dirty_rate=40' };

      it('converges when the link carries what the guest dirties', async () => {
        await launchPlainAndMigrate('calm', 'ccm.dirty_mb=8 ccm.dirty_rate=8', 'mc-below', {
          maxBandwidthBytesPerSec: 64 << 20,
          downtimeLimitMs: 50,
        });
        const done = await waitTransfer(A, 'mc-below', ended, 'to end');
        expect(done.phase).toBe('Completed');
        figures.push(
          `below bandwidth: total ${done.figures!.totalTimeMs} ms, downtime ${done.figures!.downtimeMs} ms, ${done.figures!.passes} passes`,
        );
        await keepsCounting(B, 'calm');
      });

      it('fails with MIGRATION_STALLED when the guest dirties faster than the link carries, and the source runs on', async () => {
        await ns.client.send(A, 'launch', { vmId: 'hot', spec: hot });
        await migrate(A, B, 'mc-above', {
          vmId: 'hot',
          sev: false,
          extra: { maxBandwidthBytesPerSec: 4 << 20, downtimeLimitMs: 20, stallTimeoutMs: 1500 },
        });
        const failed = await waitTransfer(A, 'mc-above', ended, 'to end');
        expect(failed).toMatchObject({ phase: 'Failed', errorCode: 'MIGRATION_STALLED' });
        expect(failed.reason).toMatch(/no progress for \d+ ms \(limit 1500 ms\)/);
        figures.push(`above bandwidth: ${failed.reason}`);
        await keepsCounting(A, 'hot');
        await waitVm(B, 'Failed', 'hot');
      });

      it('auto-converge throttles the guest until the migration converges', async () => {
        await migrate(A, B, 'mc-throttle', {
          vmId: 'hot',
          sev: false,
          extra: {
            maxBandwidthBytesPerSec: 16 << 20,
            downtimeLimitMs: 300,
            autoConverge: true,
            stallTimeoutMs: 20_000,
          },
        });
        const done = await waitTransfer(A, 'mc-throttle', ended, 'to end');
        expect(done.phase).toBe('Completed');
        expect(done.progress?.cpuThrottlePercent).toBeGreaterThan(0);
        figures.push(
          `auto-converge: throttled to ${done.progress?.cpuThrottlePercent}%, total ${done.figures!.totalTimeMs} ms, downtime ${done.figures!.downtimeMs} ms`,
        );
        await keepsCounting(B, 'hot');
      });
    });

    it('published host and transfer events, and no secret on the bus', () => {
      const subjects = new Set(seen.map((e) => e.subject));
      for (const s of [
        `ccm.evt.host.${A}.registered`,
        `ccm.evt.host.${A}.heartbeat`,
        `ccm.evt.host.${A}.vm-changed`,
        'ccm.evt.transfer.ms-1.started',
        'ccm.evt.transfer.ms-1.progressed',
        'ccm.evt.transfer.ms-1.completed',
        'ccm.evt.transfer.ms-cancel.cancelled',
        'ccm.evt.transfer.mc-above.failed',
      ]) {
        expect(subjects, s).toContain(s);
      }
      const all = seen.map((e) => e.data).join('\n');
      for (const form of [
        secret.toString('base64'),
        secret.toString('hex'),
        secret.subarray(16).toString('base64'),
      ]) {
        expect(all.includes(form)).toBe(false);
      }
    });
  },
);
