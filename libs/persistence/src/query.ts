/** Anything that runs SQL: a DataSource or a transaction's EntityManager. */
export interface Queryable {
  query<T = unknown>(sql: string, params?: unknown[]): Promise<T>;
}

/**
 * Runs an `UPDATE`/`DELETE ... RETURNING` and gives the returned rows. TypeORM's Postgres driver
 * answers those statements with `[rows, affectedCount]` (and plain `SELECT`/`INSERT` with the rows),
 * so reading the result as rows would see the pair instead.
 */
export async function updateReturning<T>(db: Queryable, sql: string, params: unknown[]): Promise<T[]> {
  const result = await db.query<unknown>(sql, params);
  if (
    Array.isArray(result) &&
    result.length === 2 &&
    Array.isArray(result[0]) &&
    typeof result[1] === 'number'
  ) {
    return result[0] as T[];
  }
  return result as T[];
}
