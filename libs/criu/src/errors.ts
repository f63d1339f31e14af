import { type CriuDiagnosis, type CriuLogRecord } from './log.js';

/**
 * Every failure libs/criu reports is a {@link CriuError}: a stable `code`, `retryable`, and context.
 * Callers branch on `instanceof` or `code`, never on message text.
 */
export abstract class CriuError extends Error {
  abstract readonly code: string;
  abstract readonly retryable: boolean;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The arguments asked for something unsafe or meaningless; nothing was run. */
export class CriuInvalidArgumentError extends CriuError {
  readonly code = 'CRIU_INVALID_ARGUMENT';
  readonly retryable = false;
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

/** The tool is not installed (or not on the runner's PATH). */
export class CriuNotFoundError extends CriuError {
  readonly code = 'CRIU_NOT_FOUND';
  readonly retryable = false;
  constructor(
    readonly tool: string,
    options?: { cause?: unknown },
  ) {
    super(`${tool} is not installed`, options);
  }
}

/** The tool did not finish before its deadline and was killed (CRIU can hang after a parasite error). */
export class CriuTimeoutError extends CriuError {
  readonly code = 'CRIU_TIMEOUT';
  readonly retryable = true;
  constructor(
    readonly action: string,
    readonly timeoutMs: number,
    readonly diagnosis: CriuDiagnosis | undefined,
    /** The last thing CRIU logged before it was killed: where it hung. */
    readonly lastRecord?: CriuLogRecord,
  ) {
    super(
      `${action} did not finish within ${timeoutMs} ms` +
        (diagnosis?.record
          ? `; the log says: ${diagnosis.record.message}`
          : lastRecord
            ? `; it hung after: ${lastRecord.message}`
            : ''),
    );
  }
}

/** The tool ran and failed; `diagnosis` holds the reason read from CRIU's log. */
export class CriuFailedError extends CriuError {
  readonly code = 'CRIU_FAILED';
  /** A failed checkpoint leaves the same state behind: the same run fails the same way. */
  readonly retryable = false;
  constructor(
    readonly action: string,
    readonly exitCode: number | null,
    readonly diagnosis: CriuDiagnosis,
    /** The last lines the tool wrote on stderr (runc's own message). */
    readonly stderr: string,
  ) {
    super(
      `${action} failed (${diagnosis.reason})` +
        (diagnosis.record
          ? `: ${diagnosis.record.message}`
          : stderr
            ? `: ${stderr.trim().split('\n').pop()}`
            : ''),
    );
  }
}

/** `criu check` found the kernel unable to do what CCM needs. */
export class CriuCheckError extends CriuError {
  readonly code = 'CRIU_CHECK_FAILED';
  readonly retryable = false;
  constructor(readonly problems: readonly string[]) {
    super(`criu check failed: ${problems.join('; ')}`);
  }
}

export const isCriuError = (e: unknown): e is CriuError => e instanceof CriuError;
