export {
  openDataSource,
  PersistenceError,
  DEFAULT_POOL_SIZE,
  type DataSourceOptions,
} from './data-source.js';
export {
  platformEventChainsMigration,
  platformOutboxPublisherMigration,
  platformTablesMigration,
} from './platform-migration.js';
/** Nest injection token of the service's TypeORM DataSource (absent in services without a database). */
export const DATA_SOURCE = Symbol.for('ccm.persistence.DataSource');
export { updateReturning, type Queryable } from './query.js';
