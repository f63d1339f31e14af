import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { reapWithParent } from './reaper.js';

/** A server the launchers start: detached, reaped if we exit without stopping it. */
export interface ServerProcess {
  readonly child: ChildProcess;
  exited(): boolean;
  /** Sends `signal`, then `hard` when it has not exited after `graceMs`; resolves once it has exited. */
  stop(signal: NodeJS.Signals, hard: NodeJS.Signals, graceMs: number): Promise<void>;
}

/**
 * Spawns a server in its own process group, so a terminal's Ctrl-C reaches only the launcher (which
 * stops services first and servers last), and sends it `reapSignal` if this process exits first; if
 * this process is killed instead (SIGKILL, an unhandled SIGTERM), the reaper kills the server's group.
 */
export function spawnServer(
  bin: string,
  args: readonly string[],
  options: SpawnOptions,
  reapSignal: NodeJS.Signals,
): ServerProcess {
  const child = spawn(bin, args, { ...options, detached: true });
  reapWithParent(child, { group: true });
  let exited = false;
  const reap = () => child.kill(reapSignal);
  process.once('exit', reap);
  const gone = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      process.removeListener('exit', reap);
      resolve();
    }),
  );
  return {
    child,
    exited: () => exited,
    stop: async (signal, hard, graceMs) => {
      if (exited) return;
      child.kill(signal);
      const t = setTimeout(() => child.kill(hard), graceMs);
      await gone;
      clearTimeout(t);
    },
  };
}
