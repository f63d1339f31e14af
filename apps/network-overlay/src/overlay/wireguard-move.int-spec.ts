import { netnsSupport, serveName, WgLab, type Prober } from '@ccm/wireguard';
import { type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WgLabDriver } from '../driver/wg-lab-driver.js';
import { answeredOnlyBy, clientAnsweredBy, expectMoveSeen } from '../testing/move-checks.js';
import { OverlayFixture } from '../testing/overlay-fixture.js';

const support = await netnsSupport();
if (!support.ok) console.log(`skipping the real WireGuard overlay test: ${support.reason}`);

/**
 * Real wireguard-go peers in three network namespaces, driven by the overlay service itself: a
 * client in C talks to the workload's /32 served in A; cut-over moves it to B; C's next requests are
 * answered by B; the brownout is measured; the revert moves it back to A.
 */
describe.skipIf(!support.ok)('a workload /32 moving between real WireGuard peers', () => {
  let lab: WgLab;
  let f: OverlayFixture;
  const servers: ChildProcess[] = [];
  const probers: Prober[] = [];
  let ip: string;
  const step = (verb: string, kind: 'action' | 'compensation' = 'action') =>
    f.send(
      'saga-coordinator',
      verb,
      f.step(verb === 'revert-cut-over' ? 'cut-over' : verb, 'm-wg', 'w-wg', { targetVmId: 'b' }, kind),
    );
  const watchUntil = (by: string) =>
    clientAnsweredBy(probers, { netns: lab.node('c').netns, ip, port: 8080 }, by);

  beforeAll(async () => {
    lab = await WgLab.create(`o${process.pid}`, '10.99.0.0/24');
    for (const [id, n] of [
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ] as const)
      await lab.addNode(id, n, false);
    f = await OverlayFixture.start(new WgLabDriver(lab), 1, { CCM_OVERLAY_ANSWER_WAIT_MS: '5000' });
    await f.send('operator', 'create-overlay', { overlayId: 'wg', cidr: '10.99.0.0/24' });
    for (const n of lab.nodes.values()) {
      const admission = await f.admission(n.id, n.keys.publicKey, { endpoint: n.endpoint });
      expect(await f.send('operator', 'admit-peer', { overlayId: 'wg', admission })).toMatchObject({
        vmId: n.id,
      });
    }
    servers.push(
      await serveName(lab.node('a').netns, 'a', 8080),
      await serveName(lab.node('b').netns, 'b', 8080),
    );
    ip = (
      (await f.send('operator', 'assign-workload', {
        overlayId: 'wg',
        workloadId: 'w-wg',
        vmId: 'a',
        port: 8080,
      })) as { ip: string }
    ).ip;
  }, 120_000);
  afterAll(async () => {
    await Promise.allSettled(probers.map((p) => p.stop()));
    for (const s of servers) s.kill();
    await f?.stop();
    await lab?.destroy();
  });

  it('C reaches the workload in A, then in B after cut-over, with the brownout measured, and in A again after the revert', async () => {
    const before = await watchUntil('a');
    const { cut, clientBrownoutMs } = await expectMoveSeen(await step('cut-over'), before, {
      from: 'a',
      to: 'b',
      peers: 3,
    });
    console.log(
      `wireguard-go cut-over: ${cut.cutOverMs.toFixed(1)} ms to update 3 peers; brownout ${cut.brownoutMs!.toFixed(1)} ms (overlay probe from C), ${clientBrownoutMs.toFixed(1)} ms (client in C)`,
    );

    const probe = (await step('probe-workload')) as { answered: boolean; from: string; brownoutMs: number };
    expect(probe).toMatchObject({ answered: true, brownoutMs: cut.brownoutMs });
    expect(probe.from).not.toBe('b');

    expect(await step('revert-cut-over', 'compensation')).toMatchObject({ reverted: true, overlayIp: ip });
    const back = await watchUntil('a');
    await back.stop();
    expect(answeredOnlyBy(back.samples, 'a')).toBe(true);
  }, 120_000);
});
