import { type CcmError, ErrorCodes } from '@ccm/contracts';

/** Process exit codes of `ccm`. */
export const ExitCode = {
  Ok: 0,
  Internal: 1,
  Usage: 2,
  Unavailable: 3,
  Refused: 4,
  /** A followed migration ended but not in Succeeded (rolled back, cancelled, needs an operator). */
  NotSucceeded: 5,
  /** `ccm audit`: a record is broken (tampered, missing events) or incomplete (aged out). */
  AuditFailed: 6,
} as const;

/** A CLI failure: exit code, a stable code, a message and what to try next (oclif's CLIError idea). */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    readonly exitCode: number,
    readonly code: string,
    message: string,
    readonly suggestion?: string,
  ) {
    super(message);
  }
}

export const usageError = (message: string, suggestion = 'run `ccm help`') =>
  new CliError(ExitCode.Usage, 'USAGE', message, suggestion);

/** Maps what a service replied (or NATS said) to a CLI error with a hint. */
export function fromCcmError(err: CcmError, key = 'operator'): CliError {
  if (err.code === ErrorCodes.Unavailable || err.code === ErrorCodes.Timeout) {
    return new CliError(
      ExitCode.Unavailable,
      err.code,
      err.message,
      'is the stack running? start it with `bash tools/dev.sh stack`',
    );
  }
  if (err.code === ErrorCodes.Unauthorized)
    return new CliError(
      ExitCode.Refused,
      err.code,
      err.message,
      `check CCM_KEYS_DIR: the ${key} key must be there and trusted`,
    );
  return new CliError(
    ExitCode.Refused,
    err.code,
    err.message,
    err.retryable ? 'the service says a retry may help' : undefined,
  );
}
