import {
  Catch,
  Controller,
  Get,
  Param,
  Query,
  UseFilters,
  type ArgumentsHost,
  type ExceptionFilter,
} from '@nestjs/common';
import {
  CcmError,
  ErrorCodes,
  GetMigrationRequestSchema,
  ListMigrationsRequestSchema,
  validationError,
  type MigrationDetail,
  type MigrationPage,
} from '@ccm/contracts';
import { type z } from 'zod';
import { migrationNotFound } from './query.handlers.js';
import { MigrationQueries } from './query.service.js';

const STATUS: Record<string, number> = {
  [ErrorCodes.ValidationFailed]: 400,
  [ErrorCodes.NotFound]: 404,
};

/**
 * Answers a CcmError as JSON with the status it maps to and the same typed error body as over NATS:
 * `{ statusCode, error: { code, message, retryable, details } }`.
 */
@Catch(CcmError)
export class CcmErrorFilter implements ExceptionFilter {
  catch(err: CcmError, host: ArgumentsHost): void {
    const status = STATUS[err.code] ?? 500;
    host
      .switchToHttp()
      .getResponse<{ status(code: number): { json(body: unknown): void } }>()
      .status(status)
      .json({ statusCode: status, error: err.toPayload() });
  }
}

function parse<S extends z.ZodType>(schema: S, what: string, input: unknown): z.infer<S> {
  const r = schema.safeParse(input);
  if (!r.success) throw validationError(what, r.error.issues);
  return r.data;
}

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
