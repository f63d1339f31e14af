import { openDataSource } from './data-source.js';
import { startPostgres, type RunningPostgres } from '@ccm/testing';
import { type DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { updateReturning } from './query.js';

describe('updateReturning (regression: leases read [rows, count] as rows and never resumed a saga)', () => {
  let pg: RunningPostgres;
  let ds: DataSource;
  beforeAll(async () => {
    pg = await startPostgres();
    ds = await openDataSource({ url: pg.url, schema: 'returning_check' });
    await ds.query('CREATE TABLE returning_check.t (id int PRIMARY KEY, v text)');
    await ds.query(`INSERT INTO returning_check.t VALUES (1, 'a'), (2, 'b')`);
  });
  afterAll(async () => {
    await ds?.destroy();
    await pg?.stop();
  });

  it('TypeORM answers an UPDATE ... RETURNING with [rows, count]', async () => {
    const raw = await ds.query(`UPDATE returning_check.t SET v = 'c' WHERE id = 1 RETURNING id`);
    expect(raw).toEqual([[{ id: 1 }], 1]);
  });

  it('gives the rows of UPDATE and DELETE, and of SELECT unchanged', async () => {
    expect(await updateReturning(ds, `UPDATE returning_check.t SET v = 'd' RETURNING id`, [])).toHaveLength(
      2,
    );
    expect(
      await updateReturning(ds, `UPDATE returning_check.t SET v = 'e' WHERE id = 9 RETURNING id`, []),
    ).toEqual([]);
    expect(await updateReturning(ds, `DELETE FROM returning_check.t WHERE id = $1 RETURNING v`, [2])).toEqual(
      [{ v: 'd' }],
    );
    expect(await updateReturning(ds, 'SELECT id FROM returning_check.t', [])).toEqual([{ id: 1 }]);
  });
});
