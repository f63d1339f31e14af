import { ccmFailure as fail, pollUntil } from '@ccm/testing';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentGuestUnavailable } from './__fixtures__/agent-guest.js';
import { killOnSignal } from './__fixtures__/kill-on-signal.js';
import { LineClient } from './line-client.js';
import { LAB_CLIENT_VM, LAB_GUESTS, LAB_OVERLAY, RuncLab } from './runc-lab.js';

/**
 * Issue 14 item 4 on real parts: a container's established TCP connection survives its move between
 * two container guests under QEMU (TCG), over the workload overlay. Both guests run the guest-agent
 * with the runc driver and the overlay's `wireguard` driver on kernel WireGuard; network-overlay
 * (CCM_OVERLAY_DRIVER=guest) runs in this process with container-checkpoint and admits three peers:
 * guest A, guest B and the client's node, a guest-agent process in this host's namespace (its own
 * WireGuard interface here). The container in A has its own network (the guest-agent's namespace,
 * its /32 on a veth, a route in the guest): the /32 is the workload's overlay address
 * (`assign-workload` to A), so every peer routes it to A's peer and nowhere else, and A forwards it
 * between its WireGuard interface and the veth. The test opens ONE connection from this process to
 * the /32 over the overlay and sends a line every 100 ms, each answered with the container's count.
 * The container moves A → B through apps/container-checkpoint (pre-copy, freeze-dump with CRIU's
 * `--tcp-established`, the network locked from before the freeze, restore + resume in B, commit); in
 * the blackout window (after freeze-dump, before the restore) network-overlay's `cut-over` step moves
 * the /32 from A's peer to B's on every peer. No route of this host moves. After the resume the same
 * socket — never closed, never reset — is answered from B with counts above the last A answered, and
 * still after commit kills the (still locked) source. Printed: the longest gap between answers (the
 * brownout the client saw), the frozen time and the cut-over's figures. Then the rollback: after
 * freeze-dump and the cut-over B loses the migration's images (`discard`), so the restore step fails;
 * the compensations run in reverse: `revert-cut-over` moves the /32 back to A's peer, thaw-source thaws
 * A and unlocks its network: the same connection is answered by A again.
 */

const repoRoot = resolve(import.meta.dirname, '..', '..');
const skipReason = agentGuestUnavailable();
if (skipReason) console.warn(`[tcp migration] skipping: ${skipReason}`);

const HEAP_PAGES = Number(process.env['CCM_LAB_HEAP_PAGES'] ?? 2048);
const PORT = 8080;
const LONG = { timeoutMs: 600_000 };

describe.skipIf(skipReason !== undefined)('a container keeps its TCP connection across guests', () => {
  const lab = new RuncLab({
    repoRoot,
    tag: process.pid % 100000,
    memoryMiB: 1536,
    checkpointEnv: { CCM_CHECKPOINT_MAX_ROUNDS: '4', CCM_CHECKPOINT_DIRTY_THRESHOLD_PAGES: '3072' },
    // The target cannot answer inside the blackout window: the cut-over does not wait for it.
    overlay: { env: { CCM_OVERLAY_ANSWER_WAIT_MS: '0' } },
    log: (l) => console.log(`[tcp migration] ${l}`),
  });
  const clients: LineClient[] = [];
  const unhook = killOnSignal(
    () => lab.pids(),
    () => lab.dropNet(),
  );

  beforeAll(async () => {
    await lab.start();
    await lab.joinOverlay();
  }, 900_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await lab.stop();
    unhook();
  });

  const debug = (err: unknown): Promise<never> => lab.failWithSerials(err);

  /**
   * Container `id` serving in A at its overlay address (assigned to A before the container runs: A's
   * guest-agent takes the /32 off its WireGuard interface when the container's namespace is made), one
   * client answered over the overlay; with the steps of its move A → B.
   */
  async function serving(id: string) {
    const { base, step, overlayStep } = await lab.checkpointSteps(id);
    const assigned = await lab.overlayCommand('assign-workload', {
      overlayId: LAB_OVERLAY,
      workloadId: id,
      vmId: LAB_GUESTS.a.vm,
      port: PORT,
    });
    const address = assigned['ip'] as string;
    await lab.runWithKey(id, base.migrationId, HEAP_PAGES, 64, { address, port: PORT });
    await expectHeldBy(address, 'a');
    const client = await pollUntil(
      `${address}:${PORT} accepts a connection`,
      () => LineClient.open(address, PORT),
      Boolean,
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    clients.push(client);
    await answeredAbove(client, 'the container answers in A', 0);
    return { address, client, step, overlayStep, migrationId: base.migrationId, started: performance.now() };
  }

  /**
   * The /32 is in the allowed IPs of `which`'s peer only, on the client's node and on the other
   * guest: reachable over the overlay at that guest and nowhere else.
   */
  async function expectHeldBy(address: string, which: 'a' | 'b') {
    const holder = LAB_GUESTS[which].vm;
    const other = LAB_GUESTS[which === 'a' ? 'b' : 'a'].vm;
    for (const node of [LAB_CLIENT_VM, other]) {
      const seen = await lab.allowedIpsSeenBy(node);
      const holders = Object.entries(seen)
        .filter(([, ips]) => ips.includes(`${address}/32`))
        .map(([vm]) => vm);
      expect(holders, `${node} routes ${address} to`).toEqual([holder]);
    }
  }

  /** ms from `t` to the client's first answer after it (the client's TCP retransmission backoff shows here). */
  const answerAfter = (client: LineClient, t: number): string =>
    ((client.answers.find((a) => a.at >= t)?.at ?? Number.NaN) - t).toFixed(0);

  /** Waits until the client got an answer counting past `from` + 5 (the container counts on). */
  const answeredAbove = (client: LineClient, what: string, from: number): Promise<number> =>
    pollUntil(
      what,
      () => {
        if (client.ended) throw new Error(`the client's connection ended: ${client.ended}`);
        return client.last();
      },
      (n) => n > from + 5,
      { timeoutMs: 120_000, intervalMs: 100 },
    );

  it('moves A → B through container-checkpoint: the same socket is answered from B, counts going on', async () => {
    const id = 'web1';
    try {
      const { address, client, step, overlayStep, started } = await serving(id);
      const preCopy = await step('pre-copy');
      const dump = await step('freeze-dump');
      const lastFromA = client.last();
      // The blackout window: network-overlay moves the /32 to B's peer on every peer.
      const cutOver = await overlayStep('cut-over');
      expect(cutOver).toMatchObject({ overlayIp: address, peersUpdated: 3 });
      await expectHeldBy(address, 'b');
      const restored = await step('restore');
      const resumedAt = performance.now();
      const fromB = await answeredAbove(client, 'the same connection is answered from B', lastFromA);
      const commit = await step('commit');
      expect(commit).toMatchObject({ source: 'killed' });
      expect((await lab.g.send(LAB_GUESTS.a.vm, 'describe', { id })).state).toBe('killed');
      expect((await lab.g.send(LAB_GUESTS.b.vm, 'describe', { id })).state).toBe('running');
      // Killing the locked source sent the client nothing: the connection goes on.
      const afterCommit = await answeredAbove(client, 'answers go on after commit', fromB);
      expect(client.ended).toBeUndefined();
      // One stream from A then B: no answer lost its place, the count never goes back.
      const counts = client.answers.map((a) => a.n);
      expect(counts.every((n, i) => i === 0 || n >= counts[i - 1])).toBe(true);
      expect(counts.filter((n) => n > lastFromA).length).toBeGreaterThan(0);
      console.log(
        `[tcp migration] ${address}:${PORT}, heap ${HEAP_PAGES} pages, one connection, a line every 100 ms:\n` +
          `  pre-copy ${JSON.stringify(preCopy['perRound'])}\n  freeze-dump ${JSON.stringify(dump)}\n` +
          `  cut-over ${JSON.stringify(cutOver)}\n` +
          `  restore ${JSON.stringify(restored)}\n  commit ${JSON.stringify(commit)}\n` +
          `  last count from A ${lastFromA}; from B ${fromB}, after commit ${afterCommit}; ` +
          `${client.answers.length} answers, socket never ended\n` +
          `  frozen time (freeze → resumed in B): ${String(restored['frozenMs'] ?? commit['frozenMs'])} ms; ` +
          `client's longest gap between answers (brownout): ${client.longestGap(started).toFixed(0)} ms; ` +
          `first answer ${answerAfter(client, resumedAt)} ms after the restore step's reply`,
      );
      client.close();
      await lab.g.send(LAB_GUESTS.b.vm, 'kill', { id }, LONG);
    } catch (e) {
      await debug(e);
    }
  }, 1_200_000);

  it('rollback: the restore in B fails, thaw-source thaws A: the same connection is answered by A again', async () => {
    const id = 'web2';
    try {
      const { address, client, step, overlayStep, migrationId, started } = await serving(id);
      await step('pre-copy');
      await step('freeze-dump');
      const frozenAt = client.last();
      expect((await lab.g.send(LAB_GUESTS.a.vm, 'describe', { id })).state).toBe('frozen');
      await overlayStep('cut-over');
      await expectHeldBy(address, 'b');
      await lab.g.send(LAB_GUESTS.b.vm, 'discard', { migrationId });
      const refused = await fail(step('restore'));
      expect(refused.code).toBe('IMAGES_INCOMPLETE');
      // The compensations in reverse: the /32 back to A's peer, then A thawed.
      expect(await overlayStep('revert-cut-over', 'cut-over')).toMatchObject({
        reverted: true,
        overlayIp: address,
      });
      await expectHeldBy(address, 'a');
      const thawed = await step('thaw-source', 'freeze-dump');
      const thawedAt = performance.now();
      const after = await answeredAbove(
        client,
        'the same connection is answered by A after the thaw',
        frozenAt,
      );
      expect(client.ended).toBeUndefined();
      console.log(
        `[tcp migration] rollback: restore refused (${refused.code}: ${refused.message}); frozen at ${frozenAt}, thaw-source ${JSON.stringify(thawed)}; ` +
          `A answers ${after} on the same socket; longest gap ${client.longestGap(started).toFixed(0)} ms, ` +
          `first answer ${answerAfter(client, thawedAt)} ms after thaw-source's reply`,
      );
      await step('discard-images', 'pre-copy');
      client.close();
      await lab.g.send(LAB_GUESTS.a.vm, 'kill', { id }, LONG);
    } catch (e) {
      await debug(e);
    }
  }, 1_200_000);
});
