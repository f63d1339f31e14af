import { readFile } from 'node:fs/promises';
import { pollUntil } from './poll.js';

/**
 * The counting guests CCM's tests migrate write a heartbeat `COUNTER n` line to their serial console;
 * these read it from the console's log file.
 */

/** The heartbeats of the serial console (`COUNTER n`), in order. */
export async function counters(serialLog: string): Promise<number[]> {
  const text = await readFile(serialLog, 'utf8').catch(() => '');
  return [...text.matchAll(/^COUNTER (\d+)\b/gm)].map((m) => Number(m[1]));
}

export const lastOf = (xs: number[]): number => xs[xs.length - 1] ?? 0;

/** Waits until the console shows counter `n` or more. */
export function counterReaches(serialLog: string, n: number, timeoutMs = 20_000): Promise<number[]> {
  return pollUntil(
    `${serialLog} to reach COUNTER ${n}`,
    () => counters(serialLog),
    (c) => lastOf(c) >= n,
    {
      timeoutMs,
      intervalMs: 50,
    },
  );
}
