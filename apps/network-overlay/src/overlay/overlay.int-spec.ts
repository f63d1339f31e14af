import { CcmError } from '@ccm/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimOverlayDriver } from '../driver/sim-driver.js';
import { OverlayFixture } from '../testing/overlay-fixture.js';

/**
 * The overlay service on a real nats-server and Postgres with the sim driver: admission gated on the
 * key-broker's signed statement, revocation, workload /32s moved at cut-over and back, and typed
 * refusals of bad input that change nothing.
 */
describe('network-overlay (sim nodes)', () => {
  let f: OverlayFixture;
  const sim = new SimOverlayDriver();
  const keys = {
    a: OverlayFixture.newKey(),
    b: OverlayFixture.newKey(),
    c: OverlayFixture.newKey(),
    d: OverlayFixture.newKey(),
  };
  const describeOverlay = async () =>
    (await f.send('operator', 'describe-overlay', { overlayId: 'ov1' })) as {
      peers: Array<{ vmId: string; workloadIps: string[] }>;
    };
  const code = (r: unknown) => (r instanceof CcmError ? r.code : 'OK');

  beforeAll(async () => {
    f = await OverlayFixture.start(sim);
    expect(await f.send('operator', 'create-overlay', { overlayId: 'ov1', cidr: '10.77.0.0/24' })).toEqual({
      overlayId: 'ov1',
      cidr: '10.77.0.0/24',
    });
    for (const vm of ['a', 'b', 'c'] as const) {
      expect(
        await f.send('operator', 'admit-peer', {
          overlayId: 'ov1',
          admission: await f.admission(vm, keys[vm]),
        }),
      ).toMatchObject({ vmId: vm });
    }
  }, 120_000);
  afterAll(async () => f?.stop());

  it('gives every admitted peer its own node address and a peer entry on every other node', async () => {
    const d = await describeOverlay();
    expect(d.peers.map((p) => p.vmId)).toEqual(['a', 'b', 'c']);
    expect(new Set(d.peers.map((p) => (p as unknown as { nodeIp: string }).nodeIp)).size).toBe(3);
    expect([...sim.peersOf('a').keys()].sort()).toEqual([keys.b, keys.c].sort());
    expect(sim.route('a', (d.peers[2] as unknown as { nodeIp: string }).nodeIp)).toBe('c');
  });

  it('refuses bad input with a typed error and changes nothing', async () => {
    const cases: Array<[string, unknown, string]> = [
      ['create-overlay', { overlayId: 'bad', cidr: '10.0.0.0/33' }, 'VALIDATION_FAILED'],
      ['create-overlay', { overlayId: 'bad', cidr: '10.0.0.1/24' }, 'VALIDATION_FAILED'],
      ['create-overlay', { overlayId: 'bad', cidr: 'ten/8' }, 'VALIDATION_FAILED'],
      ['create-overlay', { overlayId: 'ov2', cidr: '10.77.0.128/25' }, 'CONFLICT'],
      ['create-overlay', { overlayId: 'ov1', cidr: '10.88.0.0/24' }, 'CONFLICT'],
      ['assign-workload', { overlayId: 'ov1', workloadId: 'w-x', vmId: 'nobody', port: 80 }, 'NOT_FOUND'],
      ['assign-workload', { overlayId: 'nope', workloadId: 'w-x', vmId: 'a', port: 80 }, 'NOT_FOUND'],
      ['revoke-peer', { vmId: 'a.b', reason: 'x' }, 'VALIDATION_FAILED'],
    ];
    for (const [verb, data, expected] of cases) {
      const r = await f.send('operator', verb, data);
      expect([verb, code(r)]).toEqual([verb, expected]);
      expect((r as CcmError).retryable).toBe(false);
    }
    const badKey = await f.admission('d', keys.d);
    (badKey.data as { wgPublicKey: string }).wgPublicKey = 'not-a-key';
    expect(code(await f.send('operator', 'admit-peer', { overlayId: 'ov1', admission: badKey }))).toBe(
      'REFUSED',
    );
    expect((await describeOverlay()).peers.map((p) => p.vmId)).toEqual(['a', 'b', 'c']);
    expect(code(await f.send('operator', 'describe-overlay', { overlayId: 'ov2' }))).toBe('NOT_FOUND');
  });

  it('admits only on a fresh statement signed by the key-broker about that guest and key', async () => {
    const refusals: Array<[string, unknown]> = [
      // a compromised coordinator signs its own statement
      ['signer', await f.admission('d', keys.d, { signer: 'saga-coordinator' })],
      // nor the operator, nor the vm-lifecycle (which sends admit-peer for launch-vm) nor a guest-agent
      ['signer', await f.admission('d', keys.d, { signer: 'operator' })],
      ['signer', await f.admission('d', keys.d, { signer: 'vm-lifecycle' })],
      ['signer', await f.admission('d', keys.d, { signer: 'guest-agent' })],
      [
        'signature',
        {
          ...(await f.admission('d', keys.d)),
          data: { ...(await f.admission('d', keys.d)).data, wgPublicKey: keys.a },
        },
      ],
      ['stale', await f.admission('d', keys.d, { verifiedAgoMs: 10 * 60_000 })],
    ];
    for (const [reason, admission] of refusals) {
      for (const carrier of ['saga-coordinator', 'vm-lifecycle'] as const) {
        const r = (await f.send(carrier, 'admit-peer', { overlayId: 'ov1', admission })) as CcmError;
        expect([reason, carrier, r.code, r.details?.['reason']]).toEqual([
          reason,
          carrier,
          'REFUSED',
          reason,
        ]);
      }
    }
    // add-peer for one guest carrying a statement about another
    const wrongVm = await f.send(
      'saga-coordinator',
      'add-peer',
      f.step('add-peer', 'm-wrong', 'w-1', {
        targetVmId: 'd',
        overlayAdmission: await f.admission('c', keys.c),
      }),
    );
    expect(code(wrongVm)).toMatch(/REFUSED|NOT_FOUND/);
    expect((await describeOverlay()).peers.map((p) => p.vmId)).toEqual(['a', 'b', 'c']);
    expect(sim.route('a', '10.77.0.4')).toBeUndefined();
  });

  it('moves a workload /32 to the target at cut-over, answers the probe there, and moves it back', async () => {
    const w = (await f.send('operator', 'assign-workload', {
      overlayId: 'ov1',
      workloadId: 'w-1',
      vmId: 'a',
      port: 8080,
    })) as { ip: string };
    expect(sim.route('c', w.ip)).toBe('a');
    const join = await f.send(
      'saga-coordinator',
      'add-peer',
      f.step('add-peer', 'm-1', 'w-1', { targetVmId: 'd', overlayAdmission: await f.admission('d', keys.d) }),
    );
    expect(join).toEqual({ peerId: 'd', overlayIp: w.ip, overlayId: 'ov1' });
    const cut = (await f.send(
      'saga-coordinator',
      'cut-over',
      f.step('cut-over', 'm-1', 'w-1', { targetVmId: 'd' }),
    )) as Record<string, unknown>;
    expect(cut).toMatchObject({ overlayIp: w.ip, peersUpdated: 4, sourceAnswered: true });
    expect(cut['brownoutMs']).toEqual(expect.any(Number));
    for (const from of ['a', 'b', 'c']) expect([from, sim.route(from, w.ip)]).toEqual([from, 'd']);
    expect(
      await f.send('saga-coordinator', 'cut-over', f.step('cut-over', 'm-1', 'w-1', { targetVmId: 'd' })),
    ).toEqual(cut);
    const probe = await f.send('saga-coordinator', 'probe-workload', f.step('verify', 'm-1', 'w-1', {}));
    expect(probe).toMatchObject({ answered: true, overlayIp: w.ip, brownoutMs: cut['brownoutMs'] });
    expect((probe as { from: string }).from).not.toBe('d');
    const back = await f.send(
      'saga-coordinator',
      'revert-cut-over',
      f.step('cut-over', 'm-1', 'w-1', { targetVmId: 'd' }, 'compensation'),
    );
    expect(back).toMatchObject({ reverted: true, overlayIp: w.ip });
    for (const from of ['b', 'c', 'd']) expect([from, sim.route(from, w.ip)]).toEqual([from, 'a']);
    expect(
      await f.send(
        'saga-coordinator',
        'remove-peer',
        f.step('join-overlay', 'm-1', 'w-1', { targetVmId: 'd' }, 'compensation'),
      ),
    ).toEqual({ removed: true });
    expect([...sim.peersOf('a').keys()]).not.toContain(keys.d);
  });

  it('a cut-over that arrives after its revert (the coordinator gave up on it) moves nothing', async () => {
    const w = (await f.send('operator', 'assign-workload', {
      overlayId: 'ov1',
      workloadId: 'w-late',
      vmId: 'a',
      port: 8080,
    })) as { ip: string };
    await f.send(
      'saga-coordinator',
      'add-peer',
      f.step('add-peer', 'm-late', 'w-late', {
        targetVmId: 'd',
        overlayAdmission: await f.admission('d', keys.d),
      }),
    );
    const undo = await f.send(
      'saga-coordinator',
      'revert-cut-over',
      f.step('cut-over', 'm-late', 'w-late', { targetVmId: 'd' }, 'compensation'),
    );
    expect(undo).toEqual({ reverted: false });
    const late = await f.send(
      'saga-coordinator',
      'cut-over',
      f.step('cut-over', 'm-late', 'w-late', { targetVmId: 'd' }),
    );
    expect(late).toMatchObject({ code: 'CONFLICT', effect: 'none' });
    for (const from of ['b', 'c', 'd']) expect([from, sim.route(from, w.ip)]).toEqual([from, 'a']);
  });

  it('refuses step commands from any identity but the coordinator', async () => {
    const r = await f.send('operator', 'cut-over', f.step('cut-over', 'm-x', 'w-1', { targetVmId: 'b' }));
    expect(code(r)).toBe('UNAUTHORIZED');
    const unknown = await f.send(
      'saga-coordinator',
      'cut-over',
      f.step('cut-over', 'm-y', 'w-1', { targetVmId: 'nobody' }),
    );
    expect(code(unknown)).toBe('NOT_FOUND');
    expect(sim.route('c', '10.77.0.4')).toBe('a');
  });

  it('cuts a revoked guest off from every peer and never admits it again', async () => {
    const cIp = '10.77.0.3';
    expect(sim.route('a', cIp)).toBe('c');
    expect(await f.send('operator', 'revoke-peer', { vmId: 'c', reason: 'evidence revoked' })).toEqual({
      vmId: 'c',
      removedFrom: ['ov1'],
    });
    for (const n of ['a', 'b']) {
      expect([...sim.peersOf(n).keys()]).not.toContain(keys.c);
      expect(sim.route(n, cIp)).toBeUndefined();
    }
    const again = (await f.send('operator', 'admit-peer', {
      overlayId: 'ov1',
      admission: await f.admission('c', keys.c),
    })) as CcmError;
    expect([again.code, again.details?.['reason']]).toEqual(['REFUSED', 'revoked']);
  });
});
