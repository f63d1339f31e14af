/**
 * Root of every error libs/sev throws. Each failure has its own subclass with a stable `code`
 * (named after the firmware status or the check that failed) and context fields; callers use the
 * `is*` predicates or `instanceof`, never message text.
 */
export abstract class SevError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export function isSevError(err: unknown): err is SevError {
  return err instanceof SevError;
}
