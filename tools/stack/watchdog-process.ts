import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { REPO_ROOT } from '@ccm/testing';

export interface Watchdog {
  pid: number;
  /** Tells the watchdog the launcher stopped everything itself; it exits without acting. */
  release(): void;
}

/**
 * Starts the watchdog (tools/stack/watchdog.ts) for a state dir: a process outside the launcher's
 * process group holding a pipe from it, which stops every recorded process when the pipe closes without
 * a `bye`, i.e. when the launcher died (even by SIGKILL). It does not keep the launcher's event loop alive.
 */
export function startWatchdog(stateDir: string): Watchdog {
  const child = spawn(
    process.execPath,
    [join(REPO_ROOT, 'dist', 'tools', 'stack', 'watchdog.js'), stateDir],
    { detached: true, stdio: ['pipe', 'ignore', 'ignore'] },
  );
  child.unref();
  (child.stdin as unknown as Socket).unref();
  let released = false;
  return {
    pid: child.pid ?? -1,
    release: () => {
      if (released) return;
      released = true;
      child.stdin?.end('bye\n');
    },
  };
}
