import {
  bridgedHostsUnavailable,
  createBridgedHosts,
  guestClient,
  startGuest,
  type BridgedHosts,
  type GuestClient,
  type GuestProcess,
} from '@ccm/testing';
import { netnsSupport, run, serveName, type Prober } from '@ccm/wireguard';
import { type NatsConnection } from '@nats-io/transport-node';
import { type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answeredOnlyBy, clientAnsweredBy, expectMoveSeen } from '../testing/move-checks.js';
import { OverlayFixture } from '../testing/overlay-fixture.js';

const support = await netnsSupport();
const skipReason = support.ok ? bridgedHostsUnavailable() : support.reason;
if (skipReason) console.log(`skipping the overlay inside guest-agents on WireGuard: ${skipReason}`);

const GUESTS = ['ga', 'gb', 'gc'] as const;
const PORT = 8080;

/**
 * The overlay with its guest side in guest-agents: three network namespaces on a bridge, each running
 * a guest-agent process with the `wireguard` overlay driver (wireguard-go, keyed with the guest's own
 * identity key); the network-overlay (CCM_OVERLAY_DRIVER=guest) drives them over NATS. A client in
 * guest C's namespace talks to the workload's /32 served in A; cut-over moves it to B, the revert back.
 */
describe.skipIf(skipReason)('the overlay inside guest-agents on real WireGuard', () => {
  let net: BridgedHosts;
  let f: OverlayFixture;
  let nc: NatsConnection;
  let g: GuestClient;
  const guests: GuestProcess[] = [];
  const servers: ChildProcess[] = [];
  const probers: Prober[] = [];
  const keys: Record<string, string> = {};
  const iface = (i: number) => `ccmg${i}-${process.pid}`.slice(0, 15);
  let ip: string;
  const ns = (vm: string) => net.hosts[vm].ns;
  const step = (verb: string, kind: 'action' | 'compensation' = 'action') =>
    f.send(
      'saga-coordinator',
      verb,
      f.step(
        verb === 'revert-cut-over' ? 'cut-over' : verb,
        'm-guest-wg',
        'w-guest-wg',
        { targetVmId: 'gb' },
        kind,
      ),
    );
  const clientSees = (by: string) => clientAnsweredBy(probers, { netns: ns('gc'), ip, port: PORT }, by);
  const addresses = async (vm: string) => (await g.send(vm, 'overlay-state', {})).addresses as string[];

  beforeAll(async () => {
    net = createBridgedHosts(GUESTS, 11);
    f = await OverlayFixture.start(
      undefined,
      1,
      { CCM_OVERLAY_DRIVER: 'guest', CCM_OVERLAY_ANSWER_WAIT_MS: '5000' },
      { listen: { host: net.bridgeAddr, clientCidrs: [net.cidr] } },
    );
    nc = await f.stack.connectAs('operator');
    g = await guestClient(nc, f.stack.keysDir);
    await f.send('operator', 'create-overlay', { overlayId: 'gw', cidr: '10.97.0.0/24' });
    for (const [i, vm] of GUESTS.entries()) {
      const endpoint = `${net.hosts[vm].addr}:51820`;
      guests.push(
        await startGuest(
          f.stack,
          vm,
          g.send,
          {
            CCM_GUEST_OVERLAY_DRIVER: 'wireguard',
            CCM_GUEST_OVERLAY_INTERFACE: iface(i),
            CCM_GUEST_OVERLAY_ENDPOINT: endpoint,
          },
          { netns: ns(vm) },
        ),
      );
      keys[vm] = (await g.send(vm, 'identity', {})).publicKey as string;
      const admission = await f.admission(vm, keys[vm], { endpoint });
      expect(await f.send('operator', 'admit-peer', { overlayId: 'gw', admission })).toMatchObject({
        vmId: vm,
        publicKey: keys[vm],
      });
    }
    servers.push(await serveName(ns('ga'), 'ga', PORT), await serveName(ns('gb'), 'gb', PORT));
    ip = (
      (await f.send('operator', 'assign-workload', {
        overlayId: 'gw',
        workloadId: 'w-guest-wg',
        vmId: 'ga',
        port: PORT,
      })) as { ip: string }
    ).ip;
  }, 180_000);
  afterAll(async () => {
    await Promise.allSettled(probers.map((p) => p.stop()));
    for (const s of servers) s.kill();
    await Promise.allSettled(guests.map((x) => x.stop()));
    await nc?.close().catch(() => undefined);
    await f?.stop();
    net?.destroy();
  });

  it('each guest made its interface with its own identity key (the admitted one)', async () => {
    for (const [i, vm] of GUESTS.entries()) {
      const shown = await run(['wg', 'show', iface(i), 'public-key'], { netns: ns(vm) });
      expect(shown.trim(), vm).toBe(keys[vm]);
      const peers = (await g.send(vm, 'overlay-state', {})).peers as Array<{ publicKey: string }>;
      expect(peers.map((p) => p.publicKey).sort(), vm).toEqual(
        GUESTS.filter((o) => o !== vm)
          .map((o) => keys[o])
          .sort(),
      );
    }
  });

  it('C reaches the workload in A, then in B after cut-over, and in A again after the revert', async () => {
    const before = await clientSees('ga');
    expect(await addresses('ga')).toContain(ip);
    const { cut, clientBrownoutMs } = await expectMoveSeen(await step('cut-over'), before, {
      from: 'ga',
      to: 'gb',
      peers: 3,
    });
    console.log(
      `guest-agent WireGuard cut-over: ${cut.cutOverMs.toFixed(1)} ms for 3 guests; brownout ${cut.brownoutMs!.toFixed(1)} ms (observer guest C), ${clientBrownoutMs.toFixed(1)} ms (client in C)`,
    );
    expect(await addresses('gb')).toContain(ip);
    expect(await addresses('ga')).not.toContain(ip);

    const probe = (await step('probe-workload')) as { answered: boolean; from: string };
    expect(probe).toMatchObject({ answered: true });
    expect(probe.from).not.toBe('gb');

    expect(await step('revert-cut-over', 'compensation')).toMatchObject({ reverted: true, overlayIp: ip });
    const back = await clientSees('ga');
    await back.stop();
    expect(answeredOnlyBy(back.samples, 'ga')).toBe(true);
    expect(await addresses('ga')).toContain(ip);
    expect(await addresses('gb')).not.toContain(ip);
  }, 120_000);
});
