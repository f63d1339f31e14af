import { pollUntil } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { showDevice } from './device.js';
import { run } from './exec.js';
import { WgLab } from './lab.js';
import { netnsSupport } from './netns.js';

const support = await netnsSupport();
if (!support.ok) console.log(`skipping the WireGuard lab test: ${support.reason}`);

const NODES = 5;

/**
 * The lab's underlay is routed, not bridged: every node reaches every other (a WireGuard handshake
 * between each pair), yet a node holds one neighbour entry (the router) and the router one per node.
 * The kernel's ARP table is shared by all namespaces; a bridged lab held N·(N-1) entries and
 * overflowed it at 64 nodes (docs/network-overlay.md, Benchmark).
 */
describe.skipIf(!support.ok)('WgLab underlay', () => {
  let lab: WgLab;

  beforeAll(async () => {
    lab = await WgLab.create(`l${process.pid % 100000}`, '10.97.0.0/24');
    for (let n = 1; n <= NODES; n++) await lab.addNode(`n${n}`, n);
    // A keepalive to every peer makes each pair shake hands over the underlay.
    await lab.mesh({}, { persistentKeepaliveS: 1 });
  }, 120_000);
  afterAll(async () => {
    await lab?.destroy();
  });

  it('connects every pair of nodes with one underlay neighbour per node', async () => {
    for (const node of lab.nodes.values()) {
      await pollUntil(
        `${node.id} has shaken hands with every other node`,
        async () =>
          (await showDevice(node.iface)).peers.filter((p) => p.latestHandshakeMs !== undefined).length,
        (n) => n === NODES - 1,
        { timeoutMs: 30_000 },
      );
    }
    const neighbours = async (netns: string) =>
      (await run(['ip', '-n', netns, 'neigh', 'show'])).split('\n').filter((l) => l.trim() !== '');
    for (const node of lab.nodes.values()) expect(await neighbours(node.netns)).toHaveLength(1);
    expect((await neighbours(lab.underlay)).length).toBeLessThanOrEqual(NODES);
  });
});
