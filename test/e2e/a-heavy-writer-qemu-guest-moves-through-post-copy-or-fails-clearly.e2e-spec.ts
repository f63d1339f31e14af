import { isCcmError } from '@ccm/contracts';
import { counterReaches, counters, lastOf, pollUntil } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemuHostsUnavailable, type HostNamespaces } from './support/host-namespaces.js';
import { ENDED, startHeavyWriter, type HeavyWriter } from './support/heavy-writer.js';
import { guestFault } from '../../tools/guest-image/guest-image.js';

/**
 * A guest that dirties 128 MiB at 200 MB/s behind a 16 MiB/s bandwidth cap: pre-copy can never
 * converge. Allowed post-copy, the source agent switches (`migrate-start-postcopy`) once pre-copy
 * stalls, pauses before switch-over as the VM saga does, and `continue` lets the destination run: past
 * the point of no return (a cancel is refused, the source is not held but ended), the guest counts on
 * at the destination. Without post-copy the same guest fails clearly (MIGRATION_STALLED) with the
 * source counting on and the destination cleaned up. One migration per case.
 */
const skip = qemuHostsUnavailable();
if (skip) console.warn(`[post-copy qemu e2e] skipped: ${skip}`);

const A = 'pa';
const B = 'pb';
const VM = 'writer1';
const CAP = 16 << 20;
const STALL_MS = 3_000;

describe.skipIf(skip !== undefined)(
  'a heavy-writer QEMU guest: post-copy when allowed, a clear failure when not',
  () => {
    let ns: HostNamespaces;
    let w: HeavyWriter;
    let spec: HeavyWriter['spec'];
    const figures: string[] = [];

    beforeAll(async () => {
      w = await startHeavyWriter([A, B], VM);
      ({ ns, spec } = w);
    }, 240_000);

    afterAll(async () => {
      console.log(`[post-copy qemu e2e] figures:\n  ${figures.join('\n  ')}`);
      await ns?.close();
    });

    it('allowed post-copy, a migration that cannot converge switches, passes its point of no return and completes; the guest counts on at the destination', async () => {
      const id = 'writer-postcopy';
      const events: string[] = [];
      const sub = ns.nc.subscribe(`ccm.evt.transfer.${id}.>`);
      void (async () => {
        for await (const m of sub) events.push(m.subject.split('.').pop()!);
      })();
      const src = (await w.vmOn(A))!;
      const incoming = await ns.client.send(B, 'prepare-incoming', {
        vmId: VM,
        spec,
        migrationId: id,
        allowPostcopy: true,
      });
      await ns.client.send(A, 'start-migration', {
        migrationId: id,
        vmId: VM,
        uri: incoming.uri,
        maxBandwidthBytesPerSec: CAP,
        stallTimeoutMs: STALL_MS,
        allowPostcopy: true,
        pauseBeforeSwitchover: true,
        holdSource: true,
      });
      const paused = await w.waitPhase(A, id, ['AwaitingSwitchover', ...ENDED]);
      expect(paused.phase, paused.reason).toBe('AwaitingSwitchover');
      expect(paused.postcopy?.requestedAt).toBeDefined();
      expect(paused.postcopy?.committedAt).toBeUndefined();
      expect(paused.postcopy?.reason).toMatch(/pre-copy does not converge: no progress for \d+ ms/);

      const continued = (await ns.client.send(A, 'continue', { migrationId: id })).migration;
      expect(continued.postcopy?.committedAt).toBeDefined();
      const done = await w.waitPhase(A, id, ENDED);
      expect(done.phase, done.reason).toBe('Completed');
      const refused = await ns.client.send(A, 'cancel', { migrationId: id }).catch((e: unknown) => e);
      expect(isCcmError(refused) && refused.code).toBe('PAST_POINT_OF_NO_RETURN');

      const f = done.figures!;
      const t0 = Date.parse(done.startedAt);
      const toSwitch = Date.parse(done.postcopy!.requestedAt) - t0;
      const toCommit = Date.parse(done.postcopy!.committedAt!) - t0;
      const end = Date.parse(done.endedAt!) - t0;
      figures.push(
        `post-copy ${A}→${B}: switch requested ${toSwitch} ms after start, committed at ${toCommit} ms, ` +
          `completed at ${end} ms (QEMU total ${f.totalTimeMs} ms, downtime ${f.downtimeMs} ms, ` +
          `${(f.transferredBytes / 1e6).toFixed(1)} MB in ${f.passes} passes)`,
      );
      // Not held for a rollback: after post-copy the source can never resume.
      await pollUntil(
        'the source ended',
        () => w.vmOn(A),
        (v) => v === undefined || v.phase === 'MigratedAway',
      );
      const lastOnSource = lastOf(await counters(w.serial(src)));
      const dst = await pollUntil(
        'the guest Running at the destination',
        () => w.vmOn(B),
        (v) => v?.phase === 'Running',
      );
      await counterReaches(w.serial(dst!), lastOnSource + 2, 30_000);
      expect(await guestFault(w.serial(dst!))).toBeUndefined();
      await pollUntil(
        'the post-copy events',
        () => Promise.resolve(events),
        (e) => e.includes('completed'),
        { timeoutMs: 10_000 },
      );
      expect(events).toEqual(
        expect.arrayContaining(['postcopy-requested', 'postcopy-committed', 'completed']),
      );
      sub.unsubscribe();
    }, 300_000);

    it('without post-copy the same guest stalls, fails clearly within the stall time, the source counts on and the destination is cleaned up', async () => {
      const id = 'writer-stall';
      const incoming = await ns.client.send(A, 'prepare-incoming', { vmId: VM, spec, migrationId: id });
      const t0 = performance.now();
      await ns.client.send(B, 'start-migration', {
        migrationId: id,
        vmId: VM,
        uri: incoming.uri,
        maxBandwidthBytesPerSec: CAP,
        stallTimeoutMs: STALL_MS,
      });
      const done = await w.waitPhase(B, id, ENDED);
      expect(done.phase).toBe('Failed');
      expect(done.errorCode, done.reason).toBe('MIGRATION_STALLED');
      expect(done.reason).toMatch(/no progress for \d+ ms/);
      expect(done.postcopy).toBeUndefined();
      figures.push(`stalled after ${Math.round(performance.now() - t0)} ms: ${done.reason}`);
      const src = await pollUntil(
        'the source Running',
        () => w.vmOn(B),
        (v) => v?.phase === 'Running',
      );
      await counterReaches(w.serial(src!), lastOf(await counters(w.serial(src!))) + 2, 30_000);
      await pollUntil(
        'the destination cleaned up',
        () => w.vmOn(A),
        (v) => v === undefined || v.phase === 'Failed',
        {
          timeoutMs: 30_000,
        },
      );
    }, 300_000);
  },
);
