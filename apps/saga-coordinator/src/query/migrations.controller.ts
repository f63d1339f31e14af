import { Controller, Get, Param, Query, UseFilters } from '@nestjs/common';
import {
  GetMigrationRequestSchema,
  ListMigrationsRequestSchema,
  type MigrationDetail,
  type MigrationPage,
} from '@ccm/contracts';
import { CcmErrorFilter, parseInput as parse } from '@ccm/runtime';
import { migrationNotFound } from './query.handlers.js';
import { MigrationQueries } from './query.service.js';

/** `GET /migrations/:id` and `GET /migrations?phase=&host=&limit=&cursor=`, validated by the contracts. */
@Controller('migrations')
@UseFilters(CcmErrorFilter)
export class MigrationsController {
  constructor(private readonly queries: MigrationQueries) {}

  @Get()
  list(@Query() query: Record<string, unknown>): Promise<MigrationPage> {
    return this.queries.list(parse(ListMigrationsRequestSchema, 'query', query));
  }

  @Get(':id')
  async get(@Param('id') id: string): Promise<MigrationDetail> {
    const { migrationId } = parse(GetMigrationRequestSchema, 'migration id', { migrationId: id });
    const found = await this.queries.get(migrationId);
    if (!found) throw migrationNotFound(migrationId);
    return found;
  }
}
