import { Catch, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { CcmError, ErrorCodes, validationError } from '@ccm/contracts';
import { type z } from 'zod';

/** HTTP status of a typed error a query controller throws; anything else is 500. */
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
      .getResponse<{ status(code: number): { type(t: string): { json(body: unknown): void } } }>()
      .status(status)
      // JSON even where the route declares another type for its answers (/metrics: text/plain)
      .type('application/json')
      .json({ statusCode: status, error: err.toPayload() });
  }
}

/** Validates an HTTP input with its contract schema: a typed VALIDATION_FAILED (400) when it fails. */
export function parseInput<S extends z.ZodType>(schema: S, what: string, input: unknown): z.infer<S> {
  const r = schema.safeParse(input);
  if (!r.success) throw validationError(what, r.error.issues);
  return r.data;
}
