import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type TransferView } from '@ccm/contracts';
import { pollUntil } from '@ccm/testing';
import { type Subscription } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAKE_QEMU, startFakeQemuHost, type InProcessHosts } from './__fixtures__/agents.js';

/**
 * Outgoing migrations whose hypervisor replies are scripted (__fixtures__/fake-qemu.mjs, told how by
 * CCM_FAKE_QEMU_MODE): moments a real QEMU reaches only by timing, made certain. No QEMU runs; the
 * agent, NATS and Postgres are real.
 */
const HOST = 'sq';
const SPEC = { memoryMiB: 32, kernel: FAKE_QEMU };

describe('migrations with a scripted hypervisor', () => {
  let h: InProcessHosts;
  const transfer = async (id: string): Promise<TransferView | undefined> =>
    (await h.client.send(HOST, 'describe', {})).migrations.find((m) => m.migrationId === id);
  const ended = (id: string) =>
    pollUntil(
      `migration ${id} to end`,
      () => transfer(id),
      (t) => !!t && ['Completed', 'Cancelled', 'Failed'].includes(t.phase),
      { timeoutMs: 20_000, intervalMs: 50 },
    ) as Promise<TransferView>;

  /** Every transfer event of `id` published until `last` (their subjects' last token and data). */
  function eventsUntil(id: string, last: string[]): Promise<Array<{ name: string; data: unknown }>> {
    const sub: Subscription = h.nc.subscribe(`ccm.evt.transfer.${id}.>`);
    return (async () => {
      const seen: Array<{ name: string; data: unknown }> = [];
      for await (const m of sub) {
        const name = m.subject.split('.').pop()!;
        seen.push({ name, data: m.json<{ data?: unknown }>().data });
        if (last.includes(name)) break;
      }
      sub.unsubscribe();
      return seen;
    })();
  }

  async function launchAndStart(vmId: string, mode: string, extra: Record<string, unknown> = {}) {
    process.env['CCM_FAKE_QEMU_MODE'] = mode;
    const { vm } = await h.client.send(HOST, 'launch', { vmId, spec: SPEC });
    expect(vm.phase).toBe('Running');
    const events = eventsUntil(`${vmId}-m`, ['cancelled', 'failed', 'completed']);
    const started = await h.client.send(HOST, 'start-migration', {
      migrationId: `${vmId}-m`,
      vmId,
      uri: 'tcp:127.0.0.1:9',
      ...extra,
    });
    expect(started.migration.phase).toBe('Active');
    const commands = async () =>
      (await readFile(join(vm.runDir, 'qmp-commands.log'), 'utf8')).split('\n').filter(Boolean);
    return { vm, events, commands };
  }

  /**
   * A source whose post-copy broke past the point of no return: neither `resume` nor another migration
   * runs it (even after an agent restart: the flag is in its row), until a `resume` acknowledges that
   * migration; only then is `cont` sent.
   */
  async function refusesToResume(vmId: string): Promise<void> {
    const migrationId = `${vmId}-m`;
    const refusal = {
      code: 'SOURCE_NOT_RESUMABLE',
      retryable: false,
      details: expect.objectContaining({ migrationId }),
    };
    await expect(h.client.send(HOST, 'resume', { vmId })).rejects.toMatchObject(refusal);
    await expect(
      h.client.send(HOST, 'resume', { vmId, acknowledgeMigration: 'another-migration' }),
    ).rejects.toMatchObject(refusal);
    await expect(
      h.client.send(HOST, 'start-migration', { migrationId: `${vmId}-again`, vmId, uri: 'tcp:127.0.0.1:9' }),
    ).rejects.toMatchObject(refusal);
    await h.stop(HOST);
    await h.start(HOST);
    const adopted = (await h.client.send(HOST, 'describe', { vmId })).vms[0];
    expect(adopted).toMatchObject({ phase: 'Paused', resumeBlocked: { migrationId } });
    const refused = await h.client.send(HOST, 'resume', { vmId }).catch((e: unknown) => e);
    expect(refused).toMatchObject(refusal);
    expect((refused as Error).message).toMatch(/failed past the point of no return.*acknowledgeMigration/);
    const sent = (await readFile(join(adopted.runDir, 'qmp-commands.log'), 'utf8')).split('\n');
    expect(sent).not.toContain('cont');

    const resumed = (
      await h.client.send(HOST, 'resume', {
        vmId,
        acknowledgeMigration: migrationId,
        reason: 'the destination VM was destroyed',
      })
    ).vm;
    expect(resumed.phase).toBe('Running');
    expect(resumed.resumeBlocked).toBeUndefined();
    expect(resumed.reason).toMatch(new RegExp(`acknowledging migration ${migrationId}.*destroyed`));
    expect((await readFile(join(adopted.runDir, 'qmp-commands.log'), 'utf8')).split('\n')).toContain('cont');
  }

  beforeAll(async () => {
    h = await startFakeQemuHost(HOST, { CCM_MIGRATION_POLL_MS: '50', CCM_PROGRESS_INTERVAL_MS: '100' });
  });
  afterAll(() => h?.close());

  // Regression: a query-migrate reply saying pre-switchover, in flight when the cancel was sent, was
  // reported as switch-over reached (and would have let the saga go on to switch over).
  it('a pre-switchover reply that arrives after a cancel is not switch-over reached; the migration ends Cancelled', async () => {
    const { events } = await launchAndStart('race1', 'cancel-race', { pauseBeforeSwitchover: true });
    const c = (await h.client.send(HOST, 'cancel', { migrationId: 'race1-m' })).migration;
    expect(['Cancelling', 'Cancelled']).toContain(c.phase);
    expect((await ended('race1-m')).phase).toBe('Cancelled');
    const seen = await events;
    expect(seen.map((e) => e.name)).not.toContain('switchover-reached');
    expect(seen.map((e) => e.name)).toContain('cancelled');
    const phases = seen.flatMap((e) =>
      e.name === 'progressed' ? [(e.data as { phase: string }).phase] : [],
    );
    expect(phases).toContain('Cancelling'); // progress was reported, as cancelling
    expect(phases).not.toContain('AwaitingSwitchover');
    await expect(h.client.send(HOST, 'continue', { migrationId: 'race1-m' })).rejects.toMatchObject({
      code: 'CONFLICT',
    });
  });

  for (const [mode, what] of [
    ['postcopy-breaks', 'after the agent saw the destination run'],
    ['postcopy-breaks-unseen', 'before the agent saw the destination run'],
  ] as const) {
    it(`a post-copy stream that breaks ${what} (postcopy-paused) fails PAST_POINT_OF_NO_RETURN for an operator; the source is not resumed`, async () => {
      const vmId = mode === 'postcopy-breaks' ? 'pcb1' : 'pcb2';
      const { events, commands } = await launchAndStart(vmId, mode, {
        allowPostcopy: true,
        stallTimeoutMs: 200,
      });
      const failed = await ended(`${vmId}-m`);
      expect(failed).toMatchObject({ phase: 'Failed', errorCode: 'PAST_POINT_OF_NO_RETURN' });
      expect(failed.reason).toMatch(/postcopy-paused.*Detected IO failure for postcopy/);
      expect(failed.reason).toMatch(/needs an operator/);
      expect(failed.postcopy?.committedAt).toBeDefined();
      const seen = await events;
      expect(seen.map((e) => e.name)).toEqual(
        expect.arrayContaining(['postcopy-requested', 'postcopy-committed', 'failed']),
      );
      expect(seen.at(-1)?.data).toMatchObject({ code: 'PAST_POINT_OF_NO_RETURN' });
      // Neither resumed nor cancelled: either would run a guest whose memory is split between the hosts.
      const sent = await commands();
      expect(sent).toContain('migrate-start-postcopy');
      expect(sent).not.toContain('cont');
      expect(sent).not.toContain('migrate_cancel');
      const vm = (await h.client.send(HOST, 'describe', { vmId })).vms[0];
      expect(vm.reason ?? '').toMatch(/needs an operator/);
      expect(vm.phase).toBe('Paused');
      // The agent resumes nothing by itself after that; a repeated cancel answers with the failure.
      const again = (await h.client.send(HOST, 'cancel', { migrationId: `${vmId}-m` })).migration;
      expect(again).toMatchObject({ phase: 'Failed', errorCode: 'PAST_POINT_OF_NO_RETURN' });
      expect(vm.resumeBlocked).toMatchObject({ migrationId: `${vmId}-m` });
      await refusesToResume(vmId);
    });
  }
});
