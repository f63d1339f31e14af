import { DATA_SOURCE } from '@ccm/persistence';
import { type DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimOverlayDriver } from '../driver/sim-driver.js';
import { OverlayFixture } from '../testing/overlay-fixture.js';
import { OverlayService } from './overlay.service.js';

/** Two replicas, each with its own connection pool, allocate from one overlay at once. */
describe('address allocation across replicas', () => {
  let f: OverlayFixture;
  beforeAll(async () => {
    f = await OverlayFixture.start(new SimOverlayDriver(), 2);
    await f.send('operator', 'create-overlay', { overlayId: 'alloc', cidr: '10.55.0.0/24' });
    await f.send('operator', 'admit-peer', {
      overlayId: 'alloc',
      admission: await f.admission('vm-1', OverlayFixture.newKey()),
    });
  }, 120_000);
  afterAll(async () => f?.stop());

  it('never hands out one address twice (120 allocations in parallel, split over two replicas)', async () => {
    const results = await Promise.all(
      Array.from({ length: 120 }, (_, i) => {
        const app = f.apps[i % 2];
        const ds = app.get<DataSource>(DATA_SOURCE);
        const svc = app.get(OverlayService);
        return ds.transaction((m) =>
          svc.assignWorkload(m, { overlayId: 'alloc', workloadId: `w-${i}`, vmId: 'vm-1', port: 80 }),
        );
      }),
    );
    const ips = results.map((r) => r.ip);
    expect(new Set(ips).size).toBe(120);
    expect(
      ips.every((ip) => /^10\.55\.0\.(\d+)$/.test(ip) && ip !== '10.55.0.0' && ip !== '10.55.0.255'),
    ).toBe(true);
    // the overlay is full after 254 addresses (the peer's node address is one): the next is refused
    await Promise.all(
      Array.from({ length: 133 }, (_, i) =>
        f.apps[i % 2]
          .get<DataSource>(DATA_SOURCE)
          .transaction((m) =>
            f.apps[i % 2]
              .get(OverlayService)
              .assignWorkload(m, { overlayId: 'alloc', workloadId: `x-${i}`, vmId: 'vm-1', port: 80 }),
          ),
      ),
    );
    const full = await f.send('operator', 'assign-workload', {
      overlayId: 'alloc',
      workloadId: 'one-too-many',
      vmId: 'vm-1',
      port: 80,
    });
    expect(full).toMatchObject({ code: 'CONFLICT', retryable: false });
  }, 120_000);
});
