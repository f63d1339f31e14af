import { readFile } from 'node:fs/promises';

/**
 * Whether a guest makes progress, read from its serial console: the tiny guest (tools/guest-image)
 * and the simulated guest both print `COUNTER n` once a second. A guest-agent heartbeat will do the
 * same for real workloads later.
 */

/** The last `lines` lines of a console log ('' when there is none yet). */
export async function serialTail(serialLog: string, lines = 20): Promise<string[]> {
  const text = await readFile(serialLog, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).slice(-lines);
}

/** The highest `COUNTER n` on a console, 0 before the first. */
export async function lastCounter(serialLog: string): Promise<number> {
  const text = await readFile(serialLog, 'utf8').catch(() => '');
  let last = 0;
  for (const m of text.matchAll(/^COUNTER (\d+)\b/gm)) last = Math.max(last, Number(m[1]));
  return last;
}

/** What watching a guest for progress saw. */
export type ProgressVerdict =
  | { kind: 'progressing'; from: number; to: number; waitedMs: number }
  | { kind: 'stuck'; from: number; waitedMs: number; why: string };

/**
 * Waits until the console shows a counter above the one it showed at the start, or `deadlineMs` has
 * passed, or `gone()` says the guest is no longer running (its reason). Never waits without bound.
 */
export async function watchProgress(o: {
  serialLog: string;
  deadlineMs: number;
  intervalMs: number;
  gone: () => string | undefined;
}): Promise<ProgressVerdict> {
  const t0 = performance.now();
  const from = await lastCounter(o.serialLog);
  for (;;) {
    const waitedMs = Math.round(performance.now() - t0);
    const why = o.gone();
    if (why) return { kind: 'stuck', from, waitedMs, why };
    const to = await lastCounter(o.serialLog);
    if (to > from) return { kind: 'progressing', from, to, waitedMs };
    if (waitedMs >= o.deadlineMs) {
      return { kind: 'stuck', from, waitedMs, why: `its counter stayed at ${from} for ${waitedMs} ms` };
    }
    await new Promise((r) => setTimeout(r, o.intervalMs));
  }
}
