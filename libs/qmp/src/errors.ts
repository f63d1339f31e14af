/**
 * Every failure libs/qmp reports is a {@link QmpError}: one subclass per failure, each with a stable
 * `code`, a `retryable` hint (can trying again, possibly after reconnecting, help?) and context fields.
 * Callers branch on `instanceof` or the `is*` predicates, never on message text.
 */
export abstract class QmpError extends Error {
  abstract readonly code: string;
  /** Whether repeating the operation (after reconnecting where the connection is gone) can succeed. */
  abstract readonly retryable: boolean;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The QMP socket closed (QEMU exited, the peer hung up, or {@link QmpClient.close} was called). */
export class QmpSocketClosedError extends QmpError {
  readonly code = 'QMP_SOCKET_CLOSED';
  readonly retryable = true;
  constructor(
    /** The command that was waiting for its reply, if any. */
    readonly command: string | undefined,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(
      command
        ? `QMP socket closed while '${command}' awaited its reply: ${reason}`
        : `QMP socket closed: ${reason}`,
      options,
    );
  }
}

/** The socket could not be connected before the deadline (QEMU not started, or its socket never appeared). */
export class QmpConnectTimeoutError extends QmpError {
  readonly code = 'QMP_CONNECT_TIMEOUT';
  readonly retryable = true;
  constructor(
    readonly path: string,
    readonly timeoutMs: number,
    readonly attempts: number,
    options?: { cause?: unknown },
  ) {
    super(`could not connect to QMP socket ${path} within ${timeoutMs} ms (${attempts} attempts)`, options);
  }
}

/** Connecting failed with an error waiting cannot fix (permission denied, not a socket, path too long). */
export class QmpConnectError extends QmpError {
  readonly code = 'QMP_CONNECT_FAILED';
  readonly retryable = false;
  constructor(
    readonly path: string,
    readonly errno: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(`cannot connect to QMP socket ${path}: ${errno ?? 'unknown error'}`, options);
  }
}

/**
 * No reply arrived within the command's timeout. The command may still take effect in QEMU: a late
 * reply is recognised by its id and dropped, so callers must check state before retrying.
 */
export class QmpCommandTimeoutError extends QmpError {
  readonly code = 'QMP_COMMAND_TIMEOUT';
  readonly retryable = true;
  constructor(
    readonly command: string,
    readonly id: number,
    readonly timeoutMs: number,
  ) {
    super(`QMP command '${command}' (id ${id}) got no reply within ${timeoutMs} ms`);
  }
}

/** QEMU answered with `{"error": {"class", "desc"}}`. */
export class QmpCommandError extends QmpError {
  readonly code = 'QMP_COMMAND_ERROR';
  readonly retryable = false;
  constructor(
    readonly command: string,
    /** QEMU's error class, e.g. `GenericError`, `CommandNotFound`, `DeviceNotActive`. */
    readonly errorClass: string,
    /** QEMU's human-readable description. */
    readonly desc: string,
  ) {
    super(`QMP command '${command}' failed: ${errorClass}: ${desc}`);
  }
}

/** What exactly was wrong with a message QEMU sent. */
export type MalformedReason =
  /** A line that is not JSON, or JSON that is not an object. */
  | 'bad-json'
  /** A reply object with neither `return` nor `error`, and no `event`. */
  | 'no-return-or-error'
  /** A reply whose id matches no command this client sent. */
  | 'unexpected-id'
  /** A reply or event whose fields do not have the documented shape. */
  | 'bad-shape';

/**
 * QEMU sent something this client cannot interpret. Framing errors poison the connection (it is closed
 * and every waiting command fails with this error); a well-framed reply whose `return` has the wrong
 * shape fails only its own command.
 */
export class QmpMalformedReplyError extends QmpError {
  readonly code = 'QMP_MALFORMED_REPLY';
  readonly retryable = false;
  constructor(
    readonly reason: MalformedReason,
    readonly detail: string,
    /** The offending text, truncated to 500 characters. */
    readonly excerpt: string,
    readonly command?: string,
  ) {
    super(`malformed QMP message (${reason})${command ? ` for '${command}'` : ''}: ${detail}`);
  }
}

/** The peer did not start with a valid `{"QMP": {...}}` greeting (timed out, closed, or sent something else). */
export class QmpGreetingError extends QmpError {
  readonly code = 'QMP_GREETING_MISSING';
  readonly retryable = true;
  constructor(
    readonly path: string,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`no valid QMP greeting on ${path}: ${detail}`, options);
  }
}

/** An event named in {@link QmpClient.waitForEvent} did not arrive in time. */
export class QmpEventTimeoutError extends QmpError {
  readonly code = 'QMP_EVENT_TIMEOUT';
  readonly retryable = true;
  constructor(
    readonly event: string,
    readonly timeoutMs: number,
  ) {
    super(`QMP event '${event}' did not arrive within ${timeoutMs} ms`);
  }
}

/** Launcher or accelerator settings contradict each other or name something unknown. */
export class QemuConfigError extends QmpError {
  readonly code = 'QEMU_CONFIG_INVALID';
  readonly retryable = false;
}

/** QEMU exited, or never produced its QMP socket, while being started. Carries the tail of its stderr. */
export class QemuStartError extends QmpError {
  readonly code = 'QEMU_START_FAILED';
  readonly retryable = false;
  constructor(
    readonly detail: string,
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly stderrTail: string,
    readonly argv: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(
      `QEMU failed to start: ${detail}${stderrTail ? `\n--- stderr (tail) ---\n${stderrTail.trimEnd()}` : ''}`,
      options,
    );
  }
}

/** A finished migration driven by {@link driveMigration} ended in `failed` or `cancelled`, or never finished. */
export class QmpMigrationError extends QmpError {
  readonly code = 'QMP_MIGRATION_FAILED';
  readonly retryable = true;
  constructor(
    readonly status: string,
    readonly errorDesc: string | undefined,
  ) {
    super(`migration ended with status '${status}'${errorDesc ? `: ${errorDesc}` : ''}`);
  }
}

export function isQmpError(err: unknown): err is QmpError {
  return err instanceof QmpError;
}
export function isQmpSocketClosed(err: unknown): err is QmpSocketClosedError {
  return err instanceof QmpSocketClosedError;
}
export function isQmpCommandError(err: unknown, errorClass?: string): err is QmpCommandError {
  return err instanceof QmpCommandError && (errorClass === undefined || err.errorClass === errorClass);
}
export function isQmpTimeout(err: unknown): err is QmpCommandTimeoutError | QmpConnectTimeoutError {
  return err instanceof QmpCommandTimeoutError || err instanceof QmpConnectTimeoutError;
}
