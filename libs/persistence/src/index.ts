export {
  openDataSource,
  PersistenceError,
  DEFAULT_POOL_SIZE,
  type DataSourceOptions,
} from './data-source.js';
export { platformTablesMigration } from './platform-migration.js';
