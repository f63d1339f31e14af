import { schemaFor, type ServiceName } from '@ccm/contracts';
import { pollUntil } from '@ccm/testing';
import { expect } from 'vitest';
import pg from 'pg';
import { type RealContainerStack } from './real-container-stack.js';

const SAGA = `"${schemaFor('saga-coordinator')}"`;

/**
 * Where services are killed (and restarted, or left dead beside a second replica): the product's
 * step timeouts (pre-copy 30 min, provision-target 5 min), unscaled. A command lost with a killed
 * participant is sent again every 2 s with the same idempotency key until the restarted service (or
 * the other replica) takes it; a killed coordinator's sagas move on once their lease (2 s) ran out.
 */
export const RESTART_COORDINATOR_ENV = {
  CCM_SAGA_TIME_SCALE: '1',
  CCM_SAGA_MIN_STEP_TIMEOUT_MS: '1000',
  CCM_SAGA_LEASE_MS: '2000',
  CCM_STEP_RESEND_MS: '2000',
};

/**
 * Reads of the coordinator's rows straight from Postgres: fast enough to catch a step in flight
 * (a few ms a poll) and independent of the coordinator, which a chaos test may have just killed.
 */
export class SagaRows {
  private constructor(private readonly db: pg.Client) {}

  static async connect(url: string): Promise<SagaRows> {
    const db = new pg.Client(url);
    await db.connect();
    return new SagaRows(db);
  }

  /** True while an attempt of `step`'s action is in flight. */
  inFlight(id: string, step: string): Promise<boolean> {
    return this.anAttempt(id, step, 'InFlight');
  }

  /** True once an attempt of `step`'s action succeeded. */
  succeeded(id: string, step: string): Promise<boolean> {
    return this.anAttempt(id, step, 'Succeeded');
  }

  private async anAttempt(id: string, step: string, status: string): Promise<boolean> {
    const r = await this.db.query(
      `SELECT 1 FROM ${SAGA}.step_attempt
       WHERE migration_id = $1 AND step = $2 AND kind = 'action' AND status = $3`,
      [id, step, status],
    );
    return r.rowCount! > 0;
  }

  /** What the succeeded action of `step` replied (its figures), if it succeeded. */
  async result(id: string, step: string): Promise<Record<string, unknown> | undefined> {
    const r = await this.db.query<{ result: Record<string, unknown> | null }>(
      `SELECT result FROM ${SAGA}.step_attempt
       WHERE migration_id = $1 AND step = $2 AND kind = 'action' AND status = 'Succeeded'`,
      [id, step],
    );
    return r.rows[0]?.result ?? undefined;
  }

  /**
   * True when `service`'s inbox holds a reply to the action of `step` (any attempt): the command was
   * answered, its transaction committed. A replica killed while its handler runs stores none.
   */
  async commandAnswered(service: ServiceName, id: string, step: string): Promise<boolean> {
    const r = await this.db.query(
      `SELECT 1 FROM "${schemaFor(service)}".inbox
       WHERE starts_with(idempotency_key, $1) AND reply IS NOT NULL`,
      [`${id}:${step}:`],
    );
    return r.rowCount! > 0;
  }

  /** The migration's phase once it ended. */
  async ended(id: string): Promise<{ phase: string; reason: string | null } | undefined> {
    const r = await this.db.query<{ phase: string; reason: string | null }>(
      `SELECT phase, reason FROM ${SAGA}.migration WHERE id = $1 AND ended_at IS NOT NULL`,
      [id],
    );
    return r.rows[0];
  }

  /** Waits until the migration runs a step (admitted, its saga under way). */
  async inFlightAny(id: string): Promise<void> {
    await pollUntil(
      `a step of ${id} in flight`,
      async () =>
        (
          await this.db.query(
            `SELECT 1 FROM ${SAGA}.step_attempt WHERE migration_id = $1 AND status = 'InFlight'`,
            [id],
          )
        ).rowCount! > 0,
      Boolean,
      { timeoutMs: 90_000, intervalMs: 20 },
    );
  }

  /** Waits until the migration ended; its phase and reason. */
  endOf(id: string, timeoutMs = 240_000): Promise<{ phase: string; reason: string | null }> {
    return pollUntil(`${id} ends`, () => this.ended(id), Boolean, { timeoutMs });
  }

  /** The coordinator replica holding the migration's lease. */
  async leaseOwner(id: string): Promise<string | undefined> {
    const r = await this.db.query<{ lease_owner: string | null }>(
      `SELECT lease_owner FROM ${SAGA}.migration WHERE id = $1`,
      [id],
    );
    return r.rows[0]?.lease_owner ?? undefined;
  }

  /** `step`'s action attempts in order: `status` each (to tell a retried step from a clean one). */
  async attempts(id: string, step: string): Promise<string[]> {
    const r = await this.db.query<{ status: string }>(
      `SELECT status FROM ${SAGA}.step_attempt
       WHERE migration_id = $1 AND step = $2 AND kind = 'action' ORDER BY attempt`,
      [id, step],
    );
    return r.rows.map((x) => x.status);
  }

  async close(): Promise<void> {
    await this.db.end();
  }
}

/** Waits until the supervisor has replaced `name`'s process `pid` with a live one; returns its pid. */
export async function restartedBy(s: RealContainerStack, name: string, pid: number): Promise<number> {
  return pollUntil(
    `${name} restarted by the supervisor`,
    () => s.pidOf(name),
    (p): p is number => p !== undefined && p !== pid,
    { timeoutMs: 60_000, intervalMs: 50 },
  ) as Promise<number>;
}

/**
 * The container runs exactly once over every guest-agent of both hosts (never twice, never zero
 * times) and counts on where it runs; returns that VM.
 */
export async function runsExactlyOnce(s: RealContainerStack, workload: string): Promise<string> {
  const copies = await s.runningCopies(workload);
  expect(
    copies.map((c) => c.vmId),
    `${workload} running copies`,
  ).toHaveLength(1);
  const [{ vmId, counter }] = copies;
  await pollUntil(
    `${workload} counts on in ${vmId}`,
    () => s.counter(vmId, workload),
    (n) => n > counter + 2,
  );
  // Still once after it counted on (a late restore or thaw would show up here).
  expect((await s.runningCopies(workload)).map((c) => c.vmId)).toEqual([vmId]);
  return vmId;
}
