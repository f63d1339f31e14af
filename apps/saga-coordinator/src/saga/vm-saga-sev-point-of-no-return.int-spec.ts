import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type VmView } from '@ccm/contracts';
import { SevPolicyBit, startSevLaunch } from '@ccm/sev';
import { LabAuthority } from '@ccm/sev-emulator';
import {
  chainFromPlatform,
  counterReaches,
  counters,
  defaultResult,
  lastOf,
  newMigration,
  pollUntil,
  settled,
} from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmSagaWorld } from '../testing/world.js';

/**
 * The VM saga's point of no return for SEV guests, through two REAL host-agent processes (simulated
 * hypervisor, each host's SEV firmware the software secure processor of one lab): switch-over ends with
 * SEND_FINISH, which leaves the source's guest context SENT, so the source host-agent's converge reply
 * moves the saga's point of no return from `verify` to `switch-over`. A cancel before switch-over still
 * rolls back (the source guest counts on), one from switch-over on is refused saying why, and a failure
 * after it ends NeedsOperator with nothing undone. A plain guest on the same hosts keeps `verify` as its
 * pivot. The key-broker (its transport session carries the target's real chain), vm-lifecycle and
 * network-overlay are scripted.
 */
const A = 'sev-src';
const B = 'sev-dst';
/** NODBG: an SEV guest (not SEV-ES). */
const POLICY = SevPolicyBit.NODBG;
/** Converges at 16 MiB/s: 32 MiB of memory, 2 MB/s dirtied. */
const SPEC = { memoryMiB: 32, cmdline: 'ccm.dirty_mb=2 ccm.dirty_rate=2' };
/** Never converges at 16 MiB/s: dirties 64 MB/s over 16 MiB. */
const HEAVY = { memoryMiB: 32, cmdline: 'ccm.dirty_mb=16 ccm.dirty_rate=64' };
/** The guest arrives broken: it never counts at the destination, so verify fails (after 8 s). */
const PANICS = { ...SPEC, cmdline: `${SPEC.cmdline} ccm.panic_on_arrival=1` };
const SEND_FINISH_WHY = 'the SEV source cannot be resumed after SEND_FINISH';
const execFileAsync = promisify(execFile);
const cliEntry = join(import.meta.dirname, '../../../../dist/apps/cli/src/main.js');

describe('VM saga, SEV guests: the point of no return is switch-over (SEND_FINISH), through real host-agents', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'ccm-sev-pivot-'));
    await LabAuthority.create(join(work, 'lab'), { rsaBits: 2048 });
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });
  const w = vmSagaWorld(
    [A, B],
    () => ({
      CCM_HYPERVISOR: 'sim',
      CCM_SEV: 'emulated',
      CCM_SEV_LAB_DIR: join(work, 'lab'),
      CCM_MIGRATION_POLL_MS: '50',
      CCM_PROGRESS_INTERVAL_MS: '100',
      CCM_MIGRATION_MAX_BANDWIDTH_BYTES_PER_SEC: String(16 << 20),
    }),
    // The transport session releases the target's real chain: the source firmware's SEND_START checks it.
    async (hosts) => {
      const targetChain = (await hosts.send(B, 'platform', {})).sev!.chain;
      return (c) =>
        c.verb === 'open-transport-session'
          ? { kind: 'succeed', result: { ...defaultResult(c.verb, c.payload), targetChain } }
          : undefined;
    },
  );
  const serialOf = (vm: VmView) => join(vm.runDir, 'serial.log');
  const countsOn = async (serial: string) => counterReaches(serial, lastOf(await counters(serial)) + 1);

  /** Launches the guest on A (an attested SEV launch with `sev`), running; answers its console log. */
  async function launch(vmId: string, spec: typeof SPEC, sev: boolean): Promise<string> {
    let vm: VmView;
    if (sev) {
      const owner = startSevLaunch({
        pdh: chainFromPlatform(await w.hosts.send(A, 'platform', {})).pdh,
        policy: POLICY,
      });
      const q = owner.qemuInputs();
      await w.hosts.send(A, 'launch', {
        vmId,
        spec,
        sev: { policy: POLICY, godh: q.dhCertBase64, session: q.sessionBase64 },
      });
      vm = (await w.hosts.send(A, 'resume', { vmId })).vm;
      expect(vm.sev).toMatchObject({ policy: POLICY });
    } else {
      vm = (await w.hosts.send(A, 'launch', { vmId, spec })).vm;
    }
    await counterReaches(serialOf(vm), 1);
    return serialOf(vm);
  }

  /** Starts the migration of `vmId` and waits until its current step is one of `steps`. */
  async function migrateUntil(vmId: string, steps: readonly string[]): Promise<string> {
    const { key, id } = newMigration();
    await w.operator.migrate({ workload: vmId, kind: 'vm', sourceHost: A, targetHost: B }, key);
    await pollUntil(
      `${id} to reach ${steps.join(' or ')}`,
      () => w.operator.find(id),
      (m) => steps.includes(m?.currentStep ?? ''),
      { timeoutMs: 60_000, intervalMs: 20 },
    );
    return id;
  }

  const compensationsOf = (detail: Awaited<ReturnType<typeof settled>>['detail']) =>
    detail.steps.flatMap((s) => s.attempts.filter((a) => a.kind === 'compensation').map(() => s.name));

  it('a cancel while converge runs (before SEND_FINISH) rolls back: Cancelled, the SEV guest counts on at the source', async () => {
    const serialA = await launch('sev-cancel-early', HEAVY, true);
    const id = await migrateUntil('sev-cancel-early', ['converge']);
    // the guest dirties faster than the link: its pages are being sent (SEND_UPDATE_DATA), not converging
    await pollUntil(
      `${id} to be transferring`,
      () => w.operator.eventsOf(id, 'progressed'),
      (e) => e.length > 0,
    );
    await w.operator.cancel({ migrationId: id, reason: 'test: cancel before switch-over' });
    const { detail } = await settled(w.operator, id, 60_000);
    expect(detail.phase, detail.reason).toBe('Cancelled');
    expect(detail.pointOfNoReturn).toBeUndefined();
    expect(detail.steps.find((s) => s.name === 'switch-over')!.attempts).toEqual([]);
    expect(compensationsOf(detail)).toContain('start-migration');
    expect(await w.vmOn(A, 'sev-cancel-early')).toMatchObject({ phase: 'Running' });
    const target = await w.vmOn(B, 'sev-cancel-early');
    if (target) expect(['Destroyed', 'Failed']).toContain(target.phase);
    await countsOn(serialA);
  }, 120_000);

  it('a cancel once switch-over was sent is refused (SEND_FINISH), and the failed verify after it ends NeedsOperator, nothing undone', async () => {
    await launch('sev-cancel-late', PANICS, true);
    const id = await migrateUntil('sev-cancel-late', ['switch-over', 'verify']);
    const at = (await w.operator.find(id))?.currentStep;
    await w.operator.cancel({ migrationId: id, reason: 'test: cancel after switch-over was sent' });
    const refused = await pollUntil('the refusal', () => w.operator.eventsOf(id, 'cancel-refused')[0]);
    console.log(`[sev point of no return] cancel sent during ${at}: ${String(refused.data['message'])}`);
    expect(refused.data).toMatchObject({ reason: 'PastPointOfNoReturn' });
    expect(refused.data['message']).toContain('(step "switch-over" was sent: SEV guest:');
    expect(refused.data['message']).toContain(SEND_FINISH_WHY);

    const { detail, events } = await settled(w.operator, id, 90_000);
    expect(detail.phase, detail.reason).toBe('NeedsOperator');
    expect(events.some((e) => e.name === 'cancel-accepted')).toBe(false);
    expect(detail.pointOfNoReturn).toMatchObject({
      step: 'switch-over',
      reason: expect.stringContaining(SEND_FINISH_WHY),
    });
    expect(detail.reason).toMatch(/past the point of no return \("switch-over" was sent: SEV guest: /);
    expect(detail.steps.find((s) => s.name === 'verify')!.attempts.at(-1)!.error).toMatchObject({
      code: 'GUEST_NOT_PROGRESSING',
    });
    expect(compensationsOf(detail)).toEqual([]);
    // SEND_FINISH left the source's context SENT: the source ended, not held for a rollback
    expect(await w.vmOn(A, 'sev-cancel-late')).toMatchObject({ phase: 'MigratedAway' });
    // the operator's view shows the moved point of no return
    // (not spawnSync: the coordinator that answers the CLI runs in this process)
    const shown = await execFileAsync(
      process.execPath,
      [cliEntry, 'migration', id, '--nats-url', w.stack.nats.url, '--keys-dir', w.stack.keysDir],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(shown.stdout, shown.stderr).toContain(
      'point of no return moved to switch-over: SEV guest: switch-over ends with SEND_FINISH',
    );
  }, 120_000);

  it('a plain guest on the same hosts keeps verify as its pivot: its failed verify rolls back, the source counts on', async () => {
    const serialA = await launch('plain-panics', PANICS, false);
    const id = await migrateUntil('plain-panics', ['verify']);
    // a cancel while verify runs is refused (verify is the pivot) without a moved point of no return
    await w.operator.cancel({ migrationId: id, reason: 'test: cancel while verify runs' });
    const refused = await pollUntil('the refusal', () => w.operator.eventsOf(id, 'cancel-refused')[0]);
    expect(refused.data['message']).toContain('(step "verify" was sent)');
    // its source was held paused: the failed verify rolls back
    const { detail } = await settled(w.operator, id, 90_000);
    expect(detail.phase, detail.reason).toBe('RolledBack');
    expect(detail.pointOfNoReturn).toBeUndefined();
    expect(compensationsOf(detail)).toEqual(expect.arrayContaining(['switch-over', 'start-migration']));
    expect(await w.vmOn(A, 'plain-panics')).toMatchObject({ phase: 'Running' });
    await countsOn(serialA);
  }, 120_000);
});
