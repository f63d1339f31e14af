import { ccmFailure as fail, pollUntil } from '@ccm/testing';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentGuestUnavailable } from './__fixtures__/agent-guest.js';
import { killOnSignal } from './__fixtures__/kill-on-signal.js';
import { LineClient } from './line-client.js';
import { LAB_GUESTS, RuncLab } from './runc-lab.js';

/**
 * Issue 14 item 4 on real parts: a container's established TCP connection survives its move between
 * two container guests under QEMU (TCG). The container in guest A has its own network (the
 * guest-agent's namespace, its /32 on a veth, a route in the guest) and serves TCP there; the lab
 * host routes the /32 via A; the test opens ONE connection and sends a line every 100 ms, each
 * answered with the container's count. The container moves A → B through apps/container-checkpoint
 * (pre-copy, freeze-dump with CRIU's `--tcp-established`, the network locked from before the freeze,
 * restore + resume in B, commit). In the blackout window (after freeze-dump, before the restore) the
 * test moves the lab host's route for the /32 from A to B: it stands in for network-overlay's move of
 * the /32 (the overlay's cut-over), which this lab has no overlay for. After the resume the same
 * socket — never closed, never reset — is answered from B with counts above the last A answered, and
 * still after commit kills the (still locked) source. Printed: the longest gap between answers (the
 * brownout the client saw) and the frozen time. Then the rollback: after freeze-dump B loses the
 * migration's images (`discard`), so the restore step fails; its compensation thaw-source thaws A
 * and unlocks its network: the same connection is answered by A again.
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
    log: (l) => console.log(`[tcp migration] ${l}`),
  });
  const clients: LineClient[] = [];
  const unhook = killOnSignal(
    () => lab.pids(),
    () => lab.dropNet(),
  );

  beforeAll(async () => {
    await lab.start();
  }, 900_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await lab.stop();
    unhook();
  });

  const debug = (err: unknown): Promise<never> => lab.failWithSerials(err);

  /**
   * Container `id` serving at the lab's container address `n` in A, the host routing to it via A, one
   * client answered; with container-checkpoint's steps for its move A → B.
   */
  async function serving(id: string, n: number) {
    const address = lab.containerAddress(n);
    const { base, step } = await lab.checkpointSteps(id);
    await lab.runWithKey(id, base.migrationId, HEAP_PAGES, 64, { address, port: PORT });
    lab.routeVia(address, 'a');
    const client = await pollUntil(
      `${address}:${PORT} accepts a connection`,
      () => LineClient.open(address, PORT),
      Boolean,
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    clients.push(client);
    await answeredAbove(client, 'the container answers in A', 0);
    return { address, client, step, migrationId: base.migrationId, started: performance.now() };
  }

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
      const { address, client, step, started } = await serving(id, 1);
      const preCopy = await step('pre-copy');
      const dump = await step('freeze-dump');
      const lastFromA = client.last();
      // The blackout window: network-overlay would move the /32 to B's guest here.
      lab.routeVia(address, 'b');
      const restored = await step('restore');
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
          `  restore ${JSON.stringify(restored)}\n  commit ${JSON.stringify(commit)}\n` +
          `  last count from A ${lastFromA}; from B ${fromB}, after commit ${afterCommit}; ` +
          `${client.answers.length} answers, socket never ended\n` +
          `  frozen time (freeze → resumed in B): ${String(restored['frozenMs'] ?? commit['frozenMs'])} ms; ` +
          `client's longest gap between answers (brownout): ${client.longestGap(started).toFixed(0)} ms`,
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
      const { client, step, migrationId, started } = await serving(id, 2);
      await step('pre-copy');
      await step('freeze-dump');
      const frozenAt = client.last();
      expect((await lab.g.send(LAB_GUESTS.a.vm, 'describe', { id })).state).toBe('frozen');
      await lab.g.send(LAB_GUESTS.b.vm, 'discard', { migrationId });
      const refused = await fail(step('restore'));
      expect(refused.code).toBe('IMAGES_INCOMPLETE');
      const thawed = await step('thaw-source', 'freeze-dump');
      const after = await answeredAbove(
        client,
        'the same connection is answered by A after the thaw',
        frozenAt,
      );
      expect(client.ended).toBeUndefined();
      console.log(
        `[tcp migration] rollback: restore refused (${refused.code}: ${refused.message}); frozen at ${frozenAt}, thaw-source ${JSON.stringify(thawed)}; ` +
          `A answers ${after} on the same socket; longest gap ${client.longestGap(started).toFixed(0)} ms`,
      );
      await step('discard-images', 'pre-copy');
      client.close();
      await lab.g.send(LAB_GUESTS.a.vm, 'kill', { id }, LONG);
    } catch (e) {
      await debug(e);
    }
  }, 1_200_000);
});
