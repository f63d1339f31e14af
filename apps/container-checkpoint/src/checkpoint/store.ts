import { type CheckpointRound } from '@ccm/contracts';
import { type EntityManager } from 'typeorm';
import { CHECKPOINT_SCHEMA } from '../db/migrations.js';

const s = `"${CHECKPOINT_SCHEMA}"`;

/** One migration's checkpoint: which container moves from which guest to which, and its clock. */
export interface CheckpointRow {
  migrationId: string;
  containerId: string;
  sourceVm: string;
  targetVm: string;
  finalRound: number | null;
  frozenAt: Date | null;
  resumedAt: Date | null;
  frozenMs: number | null;
}

const COLUMNS = `migration_id AS "migrationId", container_id AS "containerId", source_vm AS "sourceVm",
  target_vm AS "targetVm", final_round AS "finalRound", resumed_at AS "resumedAt", frozen_ms AS "frozenMs",
  (SELECT frozen_at FROM ${s}.freeze f WHERE f.migration_id = c.migration_id) AS "frozenAt"`;

/** Creates the migration's row unless it exists; returns the row as it stands (maybe another's). */
export async function ensureCheckpoint(
  m: EntityManager,
  row: Pick<CheckpointRow, 'migrationId' | 'containerId' | 'sourceVm' | 'targetVm'>,
): Promise<CheckpointRow> {
  await m.query(
    `INSERT INTO ${s}.checkpoint (migration_id, container_id, source_vm, target_vm) VALUES ($1, $2, $3, $4)
     ON CONFLICT (migration_id) DO NOTHING`,
    [row.migrationId, row.containerId, row.sourceVm, row.targetVm],
  );
  return (await checkpointRow(m, row.migrationId))!;
}

/** The migration's row; `lock` holds it until the caller's transaction ends (one step at a time). */
export async function checkpointRow(
  m: EntityManager,
  migrationId: string,
  lock = false,
): Promise<CheckpointRow | undefined> {
  const rows = await m.query<CheckpointRow[]>(
    `SELECT ${COLUMNS} FROM ${s}.checkpoint c WHERE migration_id = $1${lock ? ' FOR UPDATE OF c' : ''}`,
    [migrationId],
  );
  return rows[0];
}

/** The first time the source froze for this migration (kept across retries of freeze-dump). */
export async function markFrozen(m: EntityManager, migrationId: string, at: Date): Promise<void> {
  await m.query(
    `INSERT INTO ${s}.freeze (migration_id, frozen_at) VALUES ($1, $2) ON CONFLICT (migration_id) DO NOTHING`,
    [migrationId, at],
  );
}

export async function markDumped(m: EntityManager, migrationId: string, finalRound: number): Promise<void> {
  await m.query(`UPDATE ${s}.checkpoint SET final_round = $2 WHERE migration_id = $1`, [
    migrationId,
    finalRound,
  ]);
}

export async function markResumed(
  m: EntityManager,
  migrationId: string,
  at: Date,
  frozenMs: number | null,
): Promise<void> {
  await m.query(`UPDATE ${s}.checkpoint SET resumed_at = $2, frozen_ms = $3 WHERE migration_id = $1`, [
    migrationId,
    at,
    frozenMs,
  ]);
}

/** The rounds recorded for a migration, in order. */
export async function rounds(m: EntityManager, migrationId: string): Promise<CheckpointRound[]> {
  const rows = await m.query<Array<CheckpointRound & { imageBytes: string | number }>>(
    `SELECT round, kind, pages, image_bytes AS "imageBytes", chunks, duration_ms AS "durationMs",
            dirty_pages AS "dirtyPages"
       FROM ${s}.image_round WHERE migration_id = $1 ORDER BY round`,
    [migrationId],
  );
  return rows.map((r) => ({ ...r, imageBytes: Number(r.imageBytes) }));
}

/** Records a round once (a repeat of the same round keeps the first record). */
export async function saveRound(m: EntityManager, migrationId: string, r: CheckpointRound): Promise<void> {
  await m.query(
    `INSERT INTO ${s}.image_round (migration_id, round, kind, pages, image_bytes, chunks, duration_ms, dirty_pages)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (migration_id, round) DO NOTHING`,
    [migrationId, r.round, r.kind, r.pages, r.imageBytes, r.chunks, r.durationMs, r.dirtyPages],
  );
}

/** The reply a (migration, step, kind) already gave, if it succeeded before. */
export async function stepResult(
  m: EntityManager,
  migrationId: string,
  step: string,
  kind: string,
): Promise<Record<string, unknown> | undefined> {
  const rows = await m.query<Array<{ result: Record<string, unknown> }>>(
    `SELECT result FROM ${s}.step_result WHERE migration_id = $1 AND step = $2 AND kind = $3`,
    [migrationId, step, kind],
  );
  return rows[0]?.result;
}

export async function saveStepResult(
  m: EntityManager,
  migrationId: string,
  step: string,
  kind: string,
  result: Record<string, unknown>,
): Promise<void> {
  await m.query(`INSERT INTO ${s}.step_result (migration_id, step, kind, result) VALUES ($1, $2, $3, $4)`, [
    migrationId,
    step,
    kind,
    JSON.stringify(result),
  ]);
}
