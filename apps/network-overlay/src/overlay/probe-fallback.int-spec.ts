import { CcmError } from '@ccm/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimOverlayDriver } from '../driver/sim-driver.js';
import { OverlayFixture } from '../testing/overlay-fixture.js';

/**
 * `probe-workload` when no peer other than the holder can ask: alone on its overlay, the workload is
 * probed on its holder (`via: 'holder'`); with another peer that cannot connect, the holder's own
 * answer tells an overlay path that is broken from a workload that is down, and the step fails.
 */
describe('probe-workload falls back to the holder (sim nodes)', () => {
  let f: OverlayFixture;
  const sim = new SimOverlayDriver();
  const keys = { a: OverlayFixture.newKey(), b: OverlayFixture.newKey() };
  const probe = (workloadId: string) =>
    f.send('saga-coordinator', 'probe-workload', f.step('verify', `m-${workloadId}`, workloadId, {}));
  let ip: string;

  beforeAll(async () => {
    f = await OverlayFixture.start(sim, 1, { CCM_OVERLAY_PROBE_TIMEOUT_MS: '300' });
    await f.send('operator', 'create-overlay', { overlayId: 'solo', cidr: '10.66.0.0/24' });
    await f.send('operator', 'admit-peer', { overlayId: 'solo', admission: await f.admission('a', keys.a) });
    const w = (await f.send('operator', 'assign-workload', {
      overlayId: 'solo',
      workloadId: 'w-solo',
      vmId: 'a',
      port: 80,
    })) as { ip: string };
    ip = w.ip;
  }, 120_000);
  afterAll(async () => f?.stop());

  it('with no other peer, probes on the holder and says so', async () => {
    expect(await probe('w-solo')).toMatchObject({ answered: true, from: 'a', via: 'holder', overlayIp: ip });
  });

  it('with another peer that cannot reach the /32, fails naming the overlay path (the holder answers)', async () => {
    await f.send('operator', 'admit-peer', { overlayId: 'solo', admission: await f.admission('b', keys.b) });
    expect(await probe('w-solo')).toMatchObject({ answered: true, from: 'b', via: 'peer' });
    sim.cutPath('b', 'a'); // b's path to a is lost (a fault the rows do not know)
    const e = await probe('w-solo');
    expect(e).toBeInstanceOf(CcmError);
    expect(e).toMatchObject({
      code: 'UNAVAILABLE',
      retryable: true,
      details: { holder: 'a', reason: 'overlay-path', holderAnswered: true, triedFrom: 'b' },
    });
  });

  it("counts no answer that is not the holder's name (CCM_OVERLAY_PROBE=name, the default)", async () => {
    sim.speaksNoHttp(ip); // the holder accepts the connection, its service answers no HTTP
    expect(await probe('w-solo')).toMatchObject({
      code: 'UNAVAILABLE',
      details: { holder: 'a', reason: 'workload', holderAnswered: false },
    });
    sim.speaksNoHttp(ip, false);
  });

  it('fails naming the workload when even its holder gets no answer', async () => {
    sim.silence('a', ip); // the workload itself stops answering
    expect(await probe('w-solo')).toMatchObject({
      code: 'UNAVAILABLE',
      details: { holder: 'a', reason: 'workload', holderAnswered: false, triedFrom: 'b' },
    });
  });
});
