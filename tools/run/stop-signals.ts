/** How long the stop on a signal may take before the process exits anyway. */
export const STOP_DEADLINE_MS = 30_000;

const EXIT_CODES: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

/**
 * Ctrl-C, SIGTERM and SIGHUP stop what a tool started (`stop`: QEMU, services, NATS, Postgres) and
 * exit with 128 + the signal's number, after one line saying so. A second signal while stopping is
 * noted and ignored: leaving at once would orphan what is being stopped; the stop is bounded by
 * {@link STOP_DEADLINE_MS} instead. `dispose` removes the handlers once the tool stopped by itself;
 * a tool that ends while a signal's stop runs exits with `exitCode()` too, so the code is the signal's.
 */
export function onStopSignals(
  name: string,
  stop: () => Promise<void>,
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): { dispose(): void; exitCode(): number | undefined } {
  let stopping = false;
  let code: number | undefined;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log(`${name}: ${signal} again; still stopping what it started`);
      return;
    }
    stopping = true;
    code = EXIT_CODES[signal] ?? 1;
    log(`${name}: ${signal} received, stopping everything it started`);
    const deadline = setTimeout(() => {
      log(`${name}: the stop took longer than ${STOP_DEADLINE_MS} ms; exiting`);
      process.exit(EXIT_CODES[signal] ?? 1);
    }, STOP_DEADLINE_MS);
    void stop()
      .catch((err: unknown) => log(`${name}: stopping failed: ${String(err)}`))
      .finally(() => {
        clearTimeout(deadline);
        process.exit(EXIT_CODES[signal] ?? 1);
      });
  };
  const signals = Object.keys(EXIT_CODES) as NodeJS.Signals[];
  for (const s of signals) process.on(s, handler);
  return {
    /** The exit code the received signal asks for (undefined while none came). */
    exitCode: () => code,
    dispose: () => {
      for (const s of signals) process.removeListener(s, handler);
    },
  };
}
