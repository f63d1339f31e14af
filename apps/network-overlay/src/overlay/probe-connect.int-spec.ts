import { CcmError } from '@ccm/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimOverlayDriver } from '../driver/sim-driver.js';
import { OverlayFixture } from '../testing/overlay-fixture.js';

/**
 * `probe-workload` with CCM_OVERLAY_PROBE=connect (a real container's service, which answers no HTTP
 * and knows no VM id): a connection the workload accepts and answers from a peer other than the
 * holder counts, also when the first answer comes a while into the probe; a workload that does not
 * answer still fails the step, within the probe's bound.
 */
/** The probe's window here: long enough for the workload that starts answering 1 s in. */
const WINDOW_MS = 2_500;

describe('probe-workload counts an accepted connection (CCM_OVERLAY_PROBE=connect, sim nodes)', () => {
  let f: OverlayFixture;
  const sim = new SimOverlayDriver();
  const keys = { a: OverlayFixture.newKey(), b: OverlayFixture.newKey() };
  const probe = () => f.send('saga-coordinator', 'probe-workload', f.step('verify', 'm-tcp', 'w-tcp', {}));
  let ip: string;

  beforeAll(async () => {
    f = await OverlayFixture.start(sim, 1, {
      CCM_OVERLAY_PROBE: 'connect',
      CCM_OVERLAY_PROBE_TIMEOUT_MS: String(WINDOW_MS),
    });
    await f.send('operator', 'create-overlay', { overlayId: 'tcp', cidr: '10.67.0.0/24' });
    for (const vm of ['a', 'b'] as const)
      await f.send('operator', 'admit-peer', {
        overlayId: 'tcp',
        admission: await f.admission(vm, keys[vm]),
      });
    ({ ip } = (await f.send('operator', 'assign-workload', {
      overlayId: 'tcp',
      workloadId: 'w-tcp',
      vmId: 'a',
      port: 8080,
    })) as { ip: string });
    sim.speaksNoHttp(ip);
  }, 120_000);
  afterAll(async () => f?.stop());

  it('answers from the other peer when the workload accepts and answers no HTTP', async () => {
    expect(await probe()).toMatchObject({ answered: true, from: 'b', via: 'peer', overlayIp: ip });
  });

  it('answers in one step when the workload starts answering within the window (a path still settling)', async () => {
    sim.silence('a', ip);
    // The restored workload's first answer comes 1 s into the probe (a handshake, a slow guest).
    const settle = setTimeout(() => sim.silence('a', ip, false), 1_000);
    try {
      const hit = (await probe()) as { answered: boolean; latencyMs: number; via: string };
      expect(hit).toMatchObject({ answered: true, via: 'peer' });
      expect(hit.latencyMs).toBeGreaterThanOrEqual(900);
    } finally {
      clearTimeout(settle);
    }
  });

  it('still fails, typed and within its bound, when the workload does not answer', async () => {
    sim.silence('a', ip);
    const t0 = performance.now();
    const e = await probe();
    const tookMs = performance.now() - t0;
    expect(e).toBeInstanceOf(CcmError);
    expect(e).toMatchObject({ code: 'UNAVAILABLE', details: { holder: 'a', reason: 'workload' } });
    // the peer's window, then half of it at the holder (the sim answers at once: no connect timeout)
    expect(tookMs).toBeGreaterThanOrEqual(WINDOW_MS * 1.5);
    expect(tookMs).toBeLessThan(WINDOW_MS * 1.5 + 2_000);
  });
});
