import { Injectable } from '@nestjs/common';
import {
  CcmError,
  ErrorCodes,
  GET_MIGRATION_VERB,
  GetMigrationRequestSchema,
  LIST_MIGRATIONS_VERB,
  ListMigrationsRequestSchema,
  subjects,
  type GetMigrationRequest,
  type ListMigrationsRequest,
  type MigrationDetail,
  type MigrationPage,
} from '@ccm/contracts';
import { OnRequest } from '@ccm/messaging';
import { MigrationQueries } from './query.service.js';

/** A typed NOT_FOUND for a migration id nobody requested. */
export function migrationNotFound(id: string): CcmError {
  return new CcmError(ErrorCodes.NotFound, `no migration ${id}`, { retryable: false });
}

/** The queries over NATS: `ccm.cmd.saga-coordinator.get-migration` and `.list-migrations`. */
@Injectable()
export class QueryHandlers {
  constructor(private readonly queries: MigrationQueries) {}

  @OnRequest({
    subject: subjects.cmd('saga-coordinator', GET_MIGRATION_VERB),
    schema: GetMigrationRequestSchema,
  })
  async get(req: GetMigrationRequest): Promise<MigrationDetail> {
    const found = await this.queries.get(req.migrationId);
    if (!found) throw migrationNotFound(req.migrationId);
    return found;
  }

  @OnRequest({
    subject: subjects.cmd('saga-coordinator', LIST_MIGRATIONS_VERB),
    schema: ListMigrationsRequestSchema,
  })
  list(req: ListMigrationsRequest): Promise<MigrationPage> {
    return this.queries.list(req);
  }
}
