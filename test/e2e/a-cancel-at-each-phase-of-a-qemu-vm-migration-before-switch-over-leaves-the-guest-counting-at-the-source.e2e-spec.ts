import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { isFinalVmPhase, schemaFor, type MigrationDetail, type VmView } from '@ccm/contracts';
import { loadTrustStore } from '@ccm/keys';
import { counterReaches, counters, lastOf, OperatorClient, pollUntil } from '@ccm/testing';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SagaRows } from './support/chaos.js';
import { qemuHostsUnavailable, type HostNamespaces } from './support/host-namespaces.js';
import { processesOf } from './support/process-table.js';
import {
  startVmSagaStack,
  VM_SOURCE as A,
  VM_TARGET as B,
  type VmSagaStack,
} from './support/vm-saga-stack.js';

/**
 * `ccm cancel` (the signed `ccm.req.cancel` the CLI publishes) at each phase of the VM saga before
 * switch-over, on one stack: the real coordinator and key-broker, two real host-agents in two network
 * namespaces running QEMU (TCG), a fresh tiny guest per row. Each row holds the participant of its step
 * so the cancel lands while the step runs, without sleeping:
 *
 * - a key-broker step waits on a lock the test holds on the table it writes (attestation, transport
 *   session), released once the cancel was accepted;
 * - a host-agent step waits in its agent's queue while the test holds the agent with SIGSTOP (its QEMU
 *   runs on), sent on once the cancel was accepted;
 * - `converge` only waits (interruptible): the cancel abandons it while QEMU's pre-copy is Active;
 * - paused before switch-over: the source agent is held during `converge`, QEMU converges on its own and
 *   pauses the guest before switch-over (the guest's counter stops on its serial console), then the cancel.
 *
 * Every row: the saga ends Cancelled with each step that may have acted compensated by its participant;
 * the guest counts on at host-a; host-b has no QEMU, no runtime files and no live VM for it; a transport
 * session, if one was opened, is closed; a transfer the source started ended Cancelled. Then the same
 * guest migrates to host-b (Succeeded, counting on there): the cancel left nothing in the way (admission,
 * a Failed destination record, a closed session). Steps after switch-over are the destination-dies test's
 * (an-operator-migrates-a-qemu-vm-with-the-cli-through-the-coordinator).
 */
const skip = qemuHostsUnavailable();
if (skip) console.warn(`[vm cancel e2e] skipped: ${skip}`);

const KB = `"${schemaFor('key-broker')}"`;
/** QEMU's pre-copy at 32 MiB/s: the first pass of the tiny guest takes a few seconds under TCG. */
const BANDWIDTH = 32 * 1024 * 1024;
/** The guest prints its counter every second: this long without a line, it is paused. */
const PAUSED_AFTER_MS = 3_000;

/** The compensation each step's participant runs when its action may have acted. */
const COMPENSATIONS: Record<string, string> = {
  admit: 'release-admission',
  'transport-session': 'close-transport-session',
  'prepare-incoming': 'destroy-incoming',
  'start-migration': 'cancel-migration',
};

type Hold = 'attestation' | 'transport' | 'target-agent' | 'source-agent' | 'none' | 'source-paused';

/** One row: the step the cancel lands in, and how it is held there. */
const ROWS: ReadonlyArray<{ phase: string; step: string; hold: Hold }> = [
  // admit is the coordinator's own and lasts milliseconds: the cancel goes when its attempt is seen
  // (the key-broker's table is locked, so the saga cannot get past attest-target meanwhile).
  { phase: 'admit', step: 'admit', hold: 'attestation' },
  { phase: 'attest-target', step: 'attest-target', hold: 'attestation' },
  { phase: 'transport-session', step: 'transport-session', hold: 'transport' },
  { phase: 'prepare-incoming', step: 'prepare-incoming', hold: 'target-agent' },
  { phase: 'start-migration', step: 'start-migration', hold: 'source-agent' },
  { phase: 'converging', step: 'converge', hold: 'none' },
  { phase: 'paused before switch-over', step: 'converge', hold: 'source-paused' },
];

describe.skipIf(skip !== undefined)(
  'a cancel at each phase of a QEMU VM migration before switch-over leaves the guest counting at the source',
  () => {
    let stack: VmSagaStack | undefined;
    let ns: HostNamespaces;
    let operator: OperatorClient;
    let rows: SagaRows;
    let db: pg.Client;
    let spec: VmSagaStack['spec'];
    const report: string[] = [];

    const vmOn = async (host: string, vmId: string): Promise<VmView | undefined> =>
      (await ns.client.send(host, 'describe', { vmId })).vms.find((v) => v.vmId === vmId);
    const serial = (v: VmView) => join(v.runDir, 'serial.log');
    const agentPid = (host: string) => ns.hosts[host].agent!.child.pid!;
    const targetDir = (vmId: string) => join(ns.hosts[B].runDir, 'vms', vmId);

    /** Holds every statement on a key-broker table until the returned release is called. */
    const lockTable = async (table: string): Promise<() => Promise<void>> => {
      const c = new pg.Client(ns.stack.postgres.url);
      await c.connect();
      await c.query('BEGIN');
      await c.query(`LOCK TABLE ${KB}.${table} IN ACCESS EXCLUSIVE MODE`);
      return async () => {
        await c.query('ROLLBACK');
        await c.end();
      };
    };
    const inFlight = (id: string, step: string) =>
      pollUntil(`${step} of ${id} in flight`, () => rows.inFlight(id, step), Boolean, {
        timeoutMs: 120_000,
        intervalMs: 5,
      });

    beforeAll(async () => {
      stack = await startVmSagaStack(
        'vm-cancel',
        ROWS.map((_, i) => `tiny-cancel-${i}`),
        { CCM_MIGRATION_MAX_BANDWIDTH_BYTES_PER_SEC: String(BANDWIDTH) },
      );
      ({ ns, spec } = stack);
      operator = await OperatorClient.connect({
        connectAs: (s) => ns.stack.connectAs(s),
        identity: (s) => ns.stack.identity(s),
        trust: await loadTrustStore(ns.stack.keysDir),
      });
      rows = await SagaRows.connect(ns.stack.postgres.url);
      db = new pg.Client(ns.stack.postgres.url);
      await db.connect();
    }, 240_000);

    afterAll(async () => {
      console.log(`[vm cancel e2e] per row:\n  ${report.join('\n  ')}`);
      await db?.end();
      await rows?.close();
      await operator?.close();
      await stack?.close();
    });

    // One QEMU pair at a time: whatever a row left (a failed row included) goes before the next.
    let current: string | undefined;
    afterEach(async () => {
      if (!current) return;
      const vmId = current;
      current = undefined;
      await Promise.allSettled([A, B].map((h) => ns.client.send(h, 'destroy', { vmId })));
    });

    ROWS.forEach((row, i) => {
      it(`cancel during ${row.phase}: Cancelled, the guest counts on at host-a, nothing of it is left on host-b, and it can move later`, async () => {
        const vmId = `tiny-cancel-${i}`;
        const key = `vm-cancel-${i}`;
        current = vmId;
        const { vm: source } = await ns.client.send(A, 'launch', { vmId, spec });
        await counterReaches(serial(source), 2, 60_000);
        const held = new Set<number>();
        const stop = (pid: number) => {
          process.kill(pid, 'SIGSTOP');
          held.add(pid);
        };
        const cont = (pid: number) => {
          process.kill(pid, 'SIGCONT');
          held.delete(pid);
        };
        let release: (() => Promise<void>) | undefined;
        let id = '';
        let landed = 'within';
        let t0 = 0;
        try {
          release =
            row.hold === 'attestation'
              ? await lockTable('attestation')
              : ['transport', 'target-agent', 'source-agent'].includes(row.hold)
                ? await lockTable('transport_session')
                : undefined;
          t0 = performance.now();
          id = await operator.migrate({ workload: vmId, kind: 'vm', sourceHost: A, targetHost: B }, key);
          if (row.hold === 'target-agent' || row.hold === 'source-agent') {
            // The key-broker holds transport-session: the agents are held before their step is sent.
            await inFlight(id, 'transport-session');
            stop(agentPid(B));
            await release!();
            release = undefined;
            if (row.hold === 'source-agent') {
              await inFlight(id, 'prepare-incoming');
              stop(agentPid(A));
              cont(agentPid(B));
            }
          }
          if (row.step === 'admit') {
            await pollUntil(
              `admit of ${id} started`,
              async () => (await rows.attempts(id, 'admit')).length > 0,
              Boolean,
              { timeoutMs: 60_000, intervalMs: 2 },
            );
            if (!(await rows.inFlight(id, 'admit')))
              landed = 'just after admit succeeded (attest-target held)';
          } else {
            await inFlight(id, row.step);
          }
          if (row.hold === 'none') {
            const t = (await ns.client.send(A, 'describe', { vmId })).migrations.find(
              (m) => m.migrationId === id,
            );
            landed = `within, source transfer ${t?.phase ?? 'not yet recorded'}`;
          }
          if (row.hold === 'source-paused') {
            stop(agentPid(A));
            // QEMU converges on its own and pauses the guest before switch-over: its counter stops.
            let last = { n: lastOf(await counters(serial(source))), at: performance.now() };
            await pollUntil(
              `${vmId} paused before switch-over (no counter line for ${PAUSED_AFTER_MS} ms)`,
              async () => {
                const n = lastOf(await counters(serial(source)));
                if (n !== last.n) last = { n, at: performance.now() };
                return performance.now() - last.at;
              },
              (quiet) => quiet >= PAUSED_AFTER_MS,
              { timeoutMs: 120_000, intervalMs: 100 },
            );
            expect(await rows.inFlight(id, 'converge'), 'converge still in flight when paused').toBe(true);
            landed = `within converge, the source guest paused before switch-over at counter ${last.n}`;
          }
          await operator.cancel({ migrationId: id, reason: `e2e cancel during ${row.phase}` });
          await pollUntil(
            'the cancel accepted',
            () => operator.find(id),
            (d) => d !== undefined && (d.endedAt !== undefined || d.phase === 'Cancelling'),
            { timeoutMs: 30_000, intervalMs: 20 },
          );
        } finally {
          await release?.();
          for (const pid of held) cont(pid);
        }

        const ended = await rows.endOf(id, 180_000);
        const ms = Math.round(performance.now() - t0);
        const d: MigrationDetail = await operator.get(id);
        expect(d.phase, d.reason).toBe('Cancelled');
        expect(d.steps.find((s) => s.name === row.step)!.attempts.length).toBeGreaterThan(0);
        // every step whose action may have acted was undone by its participant
        for (const [step, command] of Object.entries(COMPENSATIONS)) {
          const attempts = d.steps.find((s) => s.name === step)?.attempts ?? [];
          if (!attempts.some((a) => a.kind === 'action' && a.status !== 'Failed')) continue;
          expect(attempts.filter((a) => a.kind === 'compensation').at(-1), step).toMatchObject({
            command,
            status: 'Succeeded',
          });
        }
        for (const late of ['switch-over', 'verify', 'destroy-source', 'rotate']) {
          expect(d.steps.find((s) => s.name === late)?.attempts ?? [], late).toEqual([]);
        }

        // The guest counts on at host-a after the cancel.
        const onA = await vmOn(A, vmId);
        expect(onA).toMatchObject({ phase: 'Running' });
        const before = lastOf(await counters(serial(source)));
        await counterReaches(serial(source), before + 2, 30_000);

        // Host-b: no live VM, no QEMU, no runtime files for it.
        const onB = await vmOn(B, vmId);
        if (onB) expect(isFinalVmPhase(onB.phase), `host-b's ${vmId} is ${onB.phase}`).toBe(true);
        expect(await processesOf(`none-${key}`, targetDir(vmId))).toEqual([]);
        for (const f of ['qmp.sock', 'vm.pid', 'spec.json']) {
          await expect(access(join(targetDir(vmId), f)), f).rejects.toThrow();
        }
        // A transport session the saga opened is closed.
        const sessions = await db.query<{ state: string }>(
          `SELECT state FROM ${KB}.transport_session WHERE migration_id = $1`,
          [id],
        );
        for (const s of sessions.rows) expect(s.state).toBe('closed');
        // A transfer the source started ended Cancelled there.
        const transfer = (await ns.client.send(A, 'describe', { vmId })).migrations.find(
          (m) => m.migrationId === id,
        );
        if (transfer) expect(transfer.phase).toBe('Cancelled');

        // Nothing the cancel left in the way: the same guest then moves to host-b and counts on there.
        const t1 = performance.now();
        const again = await operator.migrate(
          { workload: vmId, kind: 'vm', sourceHost: A, targetHost: B },
          `${key}-again`,
        );
        const next = await rows.endOf(again, 180_000);
        expect(next.phase, next.reason ?? '').toBe('Succeeded');
        const moved = await vmOn(B, vmId);
        expect(moved).toMatchObject({ phase: 'Running', migrationId: again });
        const lastAtA = lastOf(await counters(serial(source)));
        await counterReaches(serial(moved!), lastAtA + 2, 30_000);
        const againMs = Math.round(performance.now() - t1);

        const undone = d.steps
          .flatMap((s) => s.attempts.filter((a) => a.kind === 'compensation').map((a) => a.command))
          .join(', ');
        report.push(
          `${row.phase}: ${ended.phase} after ${ms} ms (cancel ${landed}, transfer ${transfer?.phase ?? 'none'}); undone: ${undone || 'nothing'}; ` +
            `sessions ${sessions.rows.map((s) => s.state).join(',') || 'none'}; host-b ${onB?.phase ?? 'never had it'}; ` +
            `then migrated Succeeded in ${againMs} ms`,
        );
      }, 300_000);
    });
  },
);
