/**
 * Every failure libs/wireguard reports is a {@link WireguardError}: one subclass per failure, each with
 * a stable `code`, a `retryable` hint and context fields. Callers branch on `instanceof` or the
 * predicates, never on message text.
 */
export abstract class WireguardError extends Error {
  abstract readonly code: string;
  abstract readonly retryable: boolean;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An argument (interface or namespace name, key, CIDR, endpoint) is malformed; nothing was run. */
export class WgInvalidArgumentError extends WireguardError {
  readonly code = 'WG_INVALID_ARGUMENT';
  readonly retryable = false;
  constructor(
    readonly argument: string,
    readonly value: string,
    readonly reason: string,
  ) {
    super(`invalid ${argument} ${JSON.stringify(value.slice(0, 80))}: ${reason}`);
  }
}

/** A tool (`wg`, `ip`, `wireguard-go`) is not installed. */
export class WgToolMissingError extends WireguardError {
  readonly code = 'WG_TOOL_MISSING';
  readonly retryable = false;
  constructor(
    readonly tool: string,
    options?: { cause?: unknown },
  ) {
    super(`${tool} is not installed (see tools/system-packages.txt)`, options);
  }
}

/** A command ran and failed; `stderr` says why. */
export class WgCommandFailedError extends WireguardError {
  readonly code = 'WG_COMMAND_FAILED';
  readonly retryable = false;
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${argv.join(' ')} failed (exit ${exitCode ?? 'signal'}): ${stderr.trim().slice(0, 500)}`);
  }
}

/** A command or an interface did not finish or appear in time; it was killed. */
export class WgTimeoutError extends WireguardError {
  readonly code = 'WG_TIMEOUT';
  readonly retryable = true;
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super(`${what} did not finish within ${timeoutMs} ms`);
  }
}

export function isWireguardError(err: unknown): err is WireguardError {
  return err instanceof WireguardError;
}
