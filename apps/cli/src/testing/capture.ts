import { type CliIo } from '../io.js';

/** A `CliIo` that keeps what `ccm` printed, for assertions. */
export function capture(): { io: CliIo; out: string[]; err: string[]; text: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { out: (s) => void out.push(s), err: (s) => void err.push(s) },
    out,
    err,
    text: () => out.join(''),
  };
}

/** Splits a command line on spaces: `ccm('migrate w --from a --to b')`. */
export const words = (line: string): string[] => line.split(' ').filter(Boolean);
