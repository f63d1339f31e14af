import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { subjects } from '@ccm/contracts';
import { loadTrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { pollUntil, newMigration, settled } from '@ccm/testing';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { vmSagaWorld } from '../testing/world.js';

/**
 * The VM saga driven by the coordinator through two REAL host-agent processes (simulated hypervisor:
 * a process per VM, real pre-copy over TCP, QMP). Only the key-broker, vm-lifecycle and
 * network-overlay are scripted participants here (the key-broker's attest, transport session and
 * rotate); every host-agent step is answered by the agents themselves.
 */
const A = 'vm-src';
const B = 'vm-dst';
/** Converges at 16 MiB/s: 32 MiB of memory, 2 MB/s dirtied. */
const SPEC = { memoryMiB: 32, cmdline: 'ccm.dirty_mb=2 ccm.dirty_rate=2' };
/** Never converges at 16 MiB/s: dirties 64 MB/s over 16 MiB. */
const HEAVY = { memoryMiB: 32, cmdline: 'ccm.dirty_mb=16 ccm.dirty_rate=64' };

async function counters(serialLog: string): Promise<number[]> {
  const text = await readFile(serialLog, 'utf8').catch(() => '');
  return [...text.matchAll(/^COUNTER (\d+)\b/gm)].map((m) => Number(m[1]));
}
const lastOf = (xs: number[]): number => xs[xs.length - 1] ?? 0;

describe('VM saga through two real host-agent processes (sim hypervisor; key-broker, vm-lifecycle, network-overlay scripted)', () => {
  const w = vmSagaWorld([A, B], () => ({
    CCM_HYPERVISOR: 'sim',
    CCM_SEV: 'off',
    CCM_MIGRATION_POLL_MS: '50',
    CCM_PROGRESS_INTERVAL_MS: '100',
    CCM_MIGRATION_MAX_BANDWIDTH_BYTES_PER_SEC: String(16 << 20),
    // HEAVY stalls (pass 2 on) within seconds: it fails, or switches to post-copy when allowed
    CCM_MIGRATION_STALL_TIMEOUT_MS: '3000',
  }));
  const counterPasses = (serialLog: string, n: number) =>
    pollUntil(
      `${serialLog} to pass COUNTER ${n}`,
      () => counters(serialLog),
      (c) => lastOf(c) > n,
      {
        timeoutMs: 20_000,
        intervalMs: 100,
      },
    );
  const launch = async (vmId: string, spec: typeof SPEC): Promise<string> => {
    const { vm } = await w.hosts.send(A, 'launch', { vmId, spec });
    const serial = join(vm.runDir, 'serial.log');
    await counterPasses(serial, 1);
    return serial;
  };

  it('migrates a running VM: the counter goes on at the destination, the source ends only after verify', async () => {
    const serialA = await launch('vm-ok', SPEC);
    const { key, id } = newMigration();
    await w.operator.migrate({ workload: 'vm-ok', kind: 'vm', sourceHost: A, targetHost: B }, key);
    const { detail, events } = await settled(w.operator, id, 90_000);
    expect(detail.phase, detail.reason).toBe('Succeeded');
    const verify = detail.steps.find((s) => s.name === 'verify')!.attempts.at(-1)!;
    expect(verify).toMatchObject({ participant: 'saga-coordinator', status: 'Succeeded' });
    // the source ended only after verify passed, and the guest lives at the destination
    expect(await w.vmOn(A, 'vm-ok')).toMatchObject({ phase: 'MigratedAway' });
    const target = await w.vmOn(B, 'vm-ok');
    expect(target).toMatchObject({ phase: 'Running', origin: 'incoming', migrationId: id });
    const lastAtSource = lastOf(await counters(serialA));
    await counterPasses(join(target!.runDir, 'serial.log'), lastAtSource);
    // the host-agent's transfer progress reached the migration's events
    expect(
      events.some(
        (e) => e.name === 'progressed' && (e.data['progress'] as { step?: string }).step === 'converge',
      ),
    ).toBe(true);
    expect(w.participants.invalid).toEqual([]);
  });

  it('a destination that dies after switch-over (its guest panics on arrival): RolledBack with its console in the reason, the guest counts on at the source', async () => {
    const spec = { ...SPEC, cmdline: `${SPEC.cmdline} ccm.panic_on_arrival=1` };
    const serialA = await launch('vm-panic', spec);
    const { key, id } = newMigration();
    await w.operator.migrate({ workload: 'vm-panic', kind: 'vm', sourceHost: A, targetHost: B }, key);
    const { detail } = await settled(w.operator, id, 90_000);
    expect(detail.phase).toBe('RolledBack');
    const verify = detail.steps.find((s) => s.name === 'verify')!.attempts.at(-1)!;
    expect(verify.error).toMatchObject({ code: 'GUEST_NOT_PROGRESSING' });
    expect(verify.error!.message).toMatch(/Kernel panic - not syncing/);
    expect(detail.reason).toMatch(/Kernel panic - not syncing/);
    // rolled back in order: destination stopped, then the held source resumed
    const compensated = detail.steps
      .filter((s) => s.attempts.some((a) => a.kind === 'compensation' && a.status === 'Succeeded'))
      .map((s) => s.name);
    expect(compensated).toEqual(
      expect.arrayContaining(['switch-over', 'start-migration', 'prepare-incoming']),
    );
    expect(await w.vmOn(A, 'vm-panic')).toMatchObject({ phase: 'Running' });
    expect(await w.vmOn(B, 'vm-panic')).toMatchObject({ phase: 'Destroyed' });
    const before = lastOf(await counters(serialA));
    await counterPasses(serialA, before + 1);
  });

  it('allowed post-copy, a VM that cannot converge switches to it, the saga passes its point of no return at switch-over and succeeds', async () => {
    const serialA = await launch('vm-postcopy', HEAVY);
    const { key, id } = newMigration();
    await w.operator.migrate(
      { workload: 'vm-postcopy', kind: 'vm', sourceHost: A, targetHost: B, allowPostcopy: true },
      key,
    );
    const { detail } = await settled(w.operator, id, 90_000);
    expect(detail.phase, detail.reason).toBe('Succeeded');
    expect(detail.pointOfNoReturn).toMatchObject({
      step: 'switch-over',
      reason: expect.stringContaining('post-copy (pre-copy does not converge'),
    });
    // not held for a rollback: after post-copy the source cannot resume, it ended at completion
    expect(await w.vmOn(A, 'vm-postcopy')).toMatchObject({ phase: 'MigratedAway' });
    const target = await w.vmOn(B, 'vm-postcopy');
    expect(target).toMatchObject({ phase: 'Running', migrationId: id });
    await counterPasses(join(target!.runDir, 'serial.log'), lastOf(await counters(serialA)));
    const [transfer] = (await w.hosts.send(A, 'describe', { vmId: 'vm-postcopy', all: true })).migrations;
    expect(transfer.postcopy?.committedAt).toBeDefined();
  });

  it('without post-copy the same VM stalls: RolledBack with MIGRATION_STALLED, the source counts on, the destination is gone', async () => {
    const serialA = await launch('vm-stall', HEAVY);
    const { key, id } = newMigration();
    await w.operator.migrate({ workload: 'vm-stall', kind: 'vm', sourceHost: A, targetHost: B }, key);
    const { detail } = await settled(w.operator, id, 90_000);
    expect(detail.phase).toBe('RolledBack');
    const converge = detail.steps.find((s) => s.name === 'converge')!.attempts.at(-1)!;
    expect(converge.error, detail.reason).toMatchObject({ code: 'MIGRATION_STALLED' });
    expect(detail.reason).toMatch(/no progress for \d+ ms/);
    expect(detail.pointOfNoReturn).toBeUndefined();
    expect(detail.steps.find((s) => s.name === 'switch-over')!.attempts).toEqual([]);
    expect(await w.vmOn(A, 'vm-stall')).toMatchObject({ phase: 'Running' });
    const target = await w.vmOn(B, 'vm-stall');
    if (target) expect(['Destroyed', 'Failed']).toContain(target.phase);
    await counterPasses(serialA, lastOf(await counters(serialA)) + 1);
  });

  it('after the post-copy switch a destination that dies is not rolled back: NeedsOperator, the source is not resumed', async () => {
    const spec = { ...HEAVY, cmdline: `${HEAVY.cmdline} ccm.panic_on_arrival=1` };
    await launch('vm-postcopy-panic', spec);
    const { key, id } = newMigration();
    await w.operator.migrate(
      { workload: 'vm-postcopy-panic', kind: 'vm', sourceHost: A, targetHost: B, allowPostcopy: true },
      key,
    );
    const { detail } = await settled(w.operator, id, 90_000);
    expect(detail.phase).toBe('NeedsOperator');
    expect(detail.reason).toMatch(/past the point of no return \("switch-over" was sent: post-copy/);
    expect(detail.reason).toMatch(/Kernel panic - not syncing/);
    const compensations = detail.steps.flatMap((s) => s.attempts.filter((a) => a.kind === 'compensation'));
    expect(compensations).toEqual([]);
    expect(await w.vmOn(A, 'vm-postcopy-panic')).toMatchObject({ phase: 'MigratedAway' });
  });

  it('a VM the source host does not run is refused at admission: nothing reaches a host-agent', async () => {
    const { key, id } = newMigration();
    await w.operator.migrate({ workload: 'vm-nowhere', kind: 'vm', sourceHost: A, targetHost: B }, key);
    const { detail } = await settled(w.operator, id, 30_000);
    expect(detail.phase).toBe('RolledBack');
    expect(detail.reason).toMatch(/runs no VM vm-nowhere/);
    expect(detail.steps.filter((s) => s.attempts.length > 0).map((s) => s.name)).toEqual(['admit']);
    expect(await w.vmOn(B, 'vm-nowhere')).toBeUndefined();
  });

  it.each(['vm-lifecycle', 'operator'] as const)(
    'a step command signed by %s (not the coordinator) is refused UNAUTHORIZED and changes nothing',
    async (signer) => {
      const serialA = await launch(`vm-attacked-${signer}`, SPEC);
      const nc = await w.stack.connectAs(signer);
      try {
        const cmd = {
          migrationId: 'mig-000000000000000000000001',
          saga: 'vm-migration@1',
          step: 'destroy-source',
          kind: 'action',
          attempt: 1,
          workload: { id: `vm-attacked-${signer}`, kind: 'vm' },
          sourceHost: A,
          targetHost: B,
          context: {},
        };
        const err = await signedRequest(
          nc,
          await w.stack.identity(signer),
          await loadTrustStore(w.stack.keysDir),
          subjects.hostStep(A, 'destroy-vm'),
          cmd,
          z.unknown(),
          { timeoutMs: 10_000, idempotencyKey: `attack-${signer}` },
        ).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toMatchObject({ code: 'UNAUTHORIZED' });
      } finally {
        await nc.close();
      }
      expect(await w.vmOn(A, `vm-attacked-${signer}`)).toMatchObject({ phase: 'Running' });
      await counterPasses(serialA, lastOf(await counters(serialA)));
    },
  );

  describe('cancel before switch-over: the source keeps running, the destination is cleaned up', () => {
    const cases = [
      { at: 'transport-session', spec: SPEC },
      { at: 'prepare-incoming', spec: SPEC },
      { at: 'converge', spec: HEAVY },
    ] as const;
    it.each(cases)('cancelled at $at', async ({ at, spec }) => {
      const vmId = `vm-cancel-${at}`;
      const serialA = await launch(vmId, spec);
      const { key, id } = newMigration();
      let release!: () => void;
      const hold = new Promise<void>((r) => (release = r));
      if (at === 'transport-session') {
        w.participants.plan(id, (c) =>
          c.step === 'transport-session' && c.kind === 'action' ? { kind: 'hold', until: hold } : undefined,
        );
      }
      await w.operator.migrate({ workload: vmId, kind: 'vm', sourceHost: A, targetHost: B }, key);
      await pollUntil(
        `${id} to reach ${at}`,
        () => w.operator.find(id),
        (m) => m?.currentStep === at,
        { timeoutMs: 30_000, intervalMs: 20 },
      );
      if (at === 'converge') {
        // the guest dirties faster than the link: the transfer is running, not converging
        await pollUntil(
          `${id} to be transferring`,
          () => w.operator.eventsOf(id, 'progressed'),
          (e) => e.length > 0,
        );
      }
      await w.operator.cancel({ migrationId: id, reason: `test: cancel at ${at}` });
      release();
      const { detail } = await settled(w.operator, id, 60_000);
      expect(detail.phase, detail.reason).toBe('Cancelled');
      expect(detail.steps.find((s) => s.name === 'switch-over')!.attempts).toEqual([]);
      const source = await w.vmOn(A, vmId);
      expect(source).toMatchObject({ phase: 'Running' });
      const target = await w.vmOn(B, vmId);
      if (target) expect(['Destroyed', 'Failed']).toContain(target.phase);
      const before = lastOf(await counters(serialA));
      await counterPasses(serialA, before + 1);
    });
  });
});
