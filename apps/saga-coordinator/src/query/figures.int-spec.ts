import { type MigrationDetail } from '@ccm/contracts';
import { describe, expect, it } from 'vitest';
import { coordinatorWorld } from '../testing/world.js';
import { newMigration, settled } from '@ccm/testing';

const attempt = (m: MigrationDetail, step: string) =>
  m.steps
    .find((s) => s.name === step)!
    .attempts.find((a) => a.kind === 'action' && a.status === 'Succeeded')!;

/**
 * The coordinator puts the overlay's brownout beside the blackout: from the cut-over step's reply,
 * in the get-migration reply and in the `finished` event (which `ccm migrate --follow` prints).
 */
describe("a migration's figures: blackout and the overlay's brownout", () => {
  const w = coordinatorWorld();

  it('reports the cut-over reply’s brownout beside the blackout from freeze to cut-over', async () => {
    const { key, id } = newMigration();
    w.participants.plan(id, (c) =>
      c.verb === 'cut-over'
        ? {
            kind: 'succeed',
            result: {
              overlayIp: '10.77.0.9',
              cutOverMs: 31,
              brownoutMs: 47,
              sourceAnswered: false,
              peersUpdated: 16,
            },
          }
        : undefined,
    );
    await w.operator.migrate({ workload: 'fig-1', sourceHost: 'h1', targetHost: 'h2' }, key);
    const { detail, events } = await settled(w.operator, id);
    expect(detail.phase).toBe('Succeeded');
    const blackoutMs =
      Date.parse(attempt(detail, 'cut-over').endedAt!) - Date.parse(attempt(detail, 'freeze-dump').sentAt);
    expect(detail.figures).toEqual({ blackoutMs, brownoutMs: 47, cutOverMs: 31, peersUpdated: 16 });
    const finished = events.find((e) => e.name === 'finished')!;
    expect(finished.data['figures']).toEqual(detail.figures);
  });

  it('takes the brownout from the verify probe when the cut-over could not see the target answer yet', async () => {
    const { key, id } = newMigration();
    w.participants.plan(id, (c) => {
      if (c.verb === 'cut-over')
        return {
          kind: 'succeed',
          result: {
            overlayIp: '10.77.0.9',
            cutOverMs: 5,
            brownoutMs: null,
            sourceAnswered: false,
            peersUpdated: 3,
          },
        };
      if (c.verb === 'probe-workload')
        return { kind: 'succeed', result: { answered: true, latencyMs: 2, brownoutMs: 230 } };
      return undefined;
    });
    await w.operator.migrate({ workload: 'fig-2', sourceHost: 'h1', targetHost: 'h2' }, key);
    const { detail } = await settled(w.operator, id);
    expect(detail.figures).toMatchObject({ brownoutMs: 230, cutOverMs: 5, peersUpdated: 3 });
  });

  it('reports no figures for a migration that stopped before the freeze', async () => {
    const { key, id } = newMigration();
    w.participants.plan(id, (c) =>
      c.step === 'join-overlay' ? { kind: 'fail', retryable: false, effect: 'none' } : undefined,
    );
    await w.operator.migrate({ workload: 'fig-3', sourceHost: 'h1', targetHost: 'h2' }, key);
    const { detail, events } = await settled(w.operator, id);
    expect(detail.phase).toBe('RolledBack');
    expect(detail.figures).toBeUndefined();
    expect(events.find((e) => e.name === 'finished')!.data['figures']).toBeUndefined();
  });
});
