/**
 * On SIGINT or SIGTERM (a test run interrupted, its worker terminated): SIGKILLs the processes `pids()`
 * names, so no QEMU outlives the test, runs `cleanup` (synchronous: namespaces, taps), then raises the
 * signal again with these handlers gone, so the process ends as it would have without them.
 * Returns the function that removes the handlers (call it in afterAll).
 */
export function killOnSignal(
  pids: () => readonly number[],
  cleanup: () => void = () => undefined,
): () => void {
  const handler = (signal: NodeJS.Signals): void => {
    for (const pid of pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    try {
      cleanup();
    } finally {
      remove();
      process.kill(process.pid, signal);
    }
  };
  const remove = (): void => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return remove;
}
