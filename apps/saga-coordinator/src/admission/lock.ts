import { type EntityManager } from 'typeorm';

/** Advisory lock id guarding admission: `ccm`, `adm`. */
export const ADMISSION_LOCK = 0x63636d_61646d;

/**
 * Taken (shared) by every transaction that gives an admission slot back, before it does. An
 * admission pass takes the lock exclusively, so it never runs beside a release that has not
 * committed yet: the slots it counts are exactly those taken before it, and the logical clock
 * (`released_tick` < `admitted_tick`) orders releases and admissions the way the pass saw them.
 */
export async function lockForRelease(manager: EntityManager): Promise<void> {
  await manager.query('SELECT pg_advisory_xact_lock_shared($1)', [ADMISSION_LOCK]);
}

/** Tries to take the admission lock exclusively for this transaction; false when it is busy. */
export async function tryLockForAdmission(manager: EntityManager): Promise<boolean> {
  const [row] = await manager.query<Array<{ ok: boolean }>>('SELECT pg_try_advisory_xact_lock($1) AS ok', [
    ADMISSION_LOCK,
  ]);
  return row?.ok === true;
}
