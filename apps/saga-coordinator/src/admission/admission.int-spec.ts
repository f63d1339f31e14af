import { type INestApplication } from '@nestjs/common';
import { PRIORITY_RANK, type MigrationPriority } from '@ccm/contracts';
import { DATA_SOURCE } from '@ccm/persistence';
import {
  pollUntil,
  startTestStack,
  type TestStack,
  startActors,
  newMigration,
  type OperatorClient,
  type ScriptedParticipants,
} from '@ccm/testing';
import { type DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATION } from '../db/schema.js';
import { startCoordinator } from '../testing/harness.js';

const LIMITS = { global: 6, perSource: 2, perTarget: 2 };
const QUEUED = 200;
const PRIORITIES: MigrationPriority[] = ['user', 'maintenance', 'evacuation'];

interface Row {
  id: string;
  seq: number;
  rank: number;
  source: string;
  target: string;
  admitted: number;
  released: number;
  phase: string;
}

/** Slots in use just before logical tick `t` (admitted earlier, not yet released). */
function activeBefore(rows: Row[], t: number, where: (r: Row) => boolean = () => true): number {
  return rows.filter((r) => r.admitted < t && r.released > t && where(r)).length;
}

describe('admission control with 200 queued migrations', () => {
  let stack: TestStack;
  let app: INestApplication;
  let operator: OperatorClient;
  let participants: ScriptedParticipants;
  let rows: Row[];

  beforeAll(async () => {
    stack = await startTestStack({ scriptedHosts: true });
    app = await startCoordinator(stack, {
      CCM_SAGA_MAX_ACTIVE: String(LIMITS.global),
      CCM_SAGA_MAX_PER_SOURCE_HOST: String(LIMITS.perSource),
      CCM_SAGA_MAX_PER_TARGET_HOST: String(LIMITS.perTarget),
      CCM_SAGA_MIN_STEP_TIMEOUT_MS: '5000',
    });
    ({ operator, participants } = await startActors(stack, () => ({ kind: 'succeed', delayMs: 2 })));

    // Fill every slot with migrations held at their first remote step, so the 200 all queue up.
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    const blockers = Array.from({ length: LIMITS.global }, () => newMigration());
    for (const [i, b] of blockers.entries()) {
      participants.plan(b.id, (c) =>
        c.step === 'attest-target' ? { kind: 'hold', until: hold } : undefined,
      );
      await operator.migrate(
        { workload: `blocker-${i}`, sourceHost: `bs-${i}`, targetHost: `bt-${i}` },
        b.key,
      );
    }
    await pollUntil('every slot taken', () => participants.received.length === LIMITS.global);

    let seed = 7;
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    await Promise.all(
      Array.from({ length: QUEUED }, (_, i) =>
        operator.migrate({
          workload: `q-${i}`,
          kind: i % 3 === 0 ? 'vm' : 'container',
          sourceHost: `s${Math.floor(random() * 5)}`,
          targetHost: `t${Math.floor(random() * 5)}`,
          priority: PRIORITIES[Math.floor(random() * 3)],
        }),
      ),
    );
    await pollUntil(
      'all 200 queued',
      async () => (await operator.list({ phase: 'Pending', limit: 500 })).items.length,
      (n) => n === QUEUED,
      { timeoutMs: 30_000 },
    );
    release();

    const ds = app.get<DataSource>(DATA_SOURCE);
    rows = await pollUntil(
      'every migration to end',
      async () =>
        (
          await ds.query<Array<Record<string, string>>>(
            `SELECT id, seq, priority_rank, source_host, target_host, admitted_tick, released_tick, phase
             FROM ${MIGRATION} WHERE workload_id LIKE 'q-%'`,
          )
        ).map((r): Row => ({
          id: r['id'],
          seq: Number(r['seq']),
          rank: Number(r['priority_rank']),
          source: r['source_host'],
          target: r['target_host'],
          admitted: Number(r['admitted_tick'] ?? Infinity),
          released: Number(r['released_tick'] ?? Infinity),
          phase: r['phase'],
        })),
      (rs) => rs.length === QUEUED && rs.every((r) => r.phase === 'Succeeded'),
      { timeoutMs: 120_000, intervalMs: 250 },
    );
  }, 180_000);

  afterAll(async () => {
    await participants?.stop();
    await operator?.close();
    await app?.close();
    await stack?.stop();
  });

  it('every one of them succeeded', () => {
    expect(rows.filter((r) => r.phase === 'Succeeded')).toHaveLength(QUEUED);
  });

  it('never ran more than the global, per-source and per-target limits at once', () => {
    let peak = 0;
    for (const r of rows) {
      const t = r.admitted + 0.5;
      peak = Math.max(peak, activeBefore(rows, t));
      expect(activeBefore(rows, t)).toBeLessThanOrEqual(LIMITS.global);
      expect(activeBefore(rows, t, (x) => x.source === r.source)).toBeLessThanOrEqual(LIMITS.perSource);
      expect(activeBefore(rows, t, (x) => x.target === r.target)).toBeLessThanOrEqual(LIMITS.perTarget);
    }
    expect(peak).toBe(LIMITS.global);
  });

  it('admitted higher priorities first, then first come first served, passing over only full hosts', () => {
    const violations: string[] = [];
    for (const b of rows) {
      for (const a of rows) {
        const aFirst = a.rank > b.rank || (a.rank === b.rank && a.seq < b.seq);
        if (!aFirst || a.admitted < b.admitted) continue;
        const sourceFull = activeBefore(rows, b.admitted, (x) => x.source === a.source) >= LIMITS.perSource;
        const targetFull = activeBefore(rows, b.admitted, (x) => x.target === a.target) >= LIMITS.perTarget;
        if (!sourceFull && !targetFull) violations.push(`${b.id} went before ${a.id}`);
      }
    }
    expect(violations).toEqual([]);
    const ranks = Object.values(PRIORITY_RANK);
    // Sanity: the workload really mixed priorities.
    for (const rank of ranks) expect(rows.some((r) => r.rank === rank)).toBe(true);
  });
});
