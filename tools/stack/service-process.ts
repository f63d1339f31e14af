import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pollUntil } from '@ccm/testing';

/** The repository root (this file is tools/stack/ in the sources and dist/tools/stack/ when built). */
export const REPO_ROOT = (() => {
  const here = dirname(fileURLToPath(import.meta.url));
  return here.includes(`${join('dist', 'tools')}`)
    ? resolve(here, '..', '..', '..')
    : resolve(here, '..', '..');
})();

export function serviceEntry(app: string): string {
  return join(REPO_ROOT, 'dist', 'apps', app, 'src', 'main.js');
}

export interface ServiceProcess {
  app: string;
  /** The environment it was started with (beyond the inherited one). */
  env: Record<string, string>;
  child: ChildProcess;
  httpPort: number;
  /** Every log line so far, parsed when it is JSON. */
  lines: Array<Record<string, unknown> | string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` (SIGTERM by default) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts a built CCM app as its own process and waits for its `ready` log line (which names the HTTP
 * port). stdout/stderr are kept in memory and, when `logFile` is given, appended there.
 */
export async function startServiceProcess(
  app: string,
  env: Record<string, string>,
  opts: {
    logFile?: string;
    readyTimeoutMs?: number;
    /** Run it inside this network namespace (`ip netns exec` execs node, so `child.pid` is node's). */
    netns?: string;
  } = {},
): Promise<ServiceProcess> {
  const node = [process.execPath, '--enable-source-maps', serviceEntry(app)];
  const [command, ...args] = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...node] : node;
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Own process group: Ctrl-C goes to the launcher, which drains services in order.
    detached: true,
  });
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  child.once('exit', () => process.removeListener('exit', reap));
  const lines: ServiceProcess['lines'] = [];
  const log = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
  const collect = (chunk: Buffer) => {
    log?.write(chunk);
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push(line);
      }
    }
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => {
      log?.end();
      r({ code, signal });
    }),
  );
  let done = false;
  void exited.then(() => (done = true));
  const ready = await pollUntil(
    `${app} ready`,
    () => {
      if (done)
        throw new Error(
          `${app} exited before ready: ${lines
            .slice(-5)
            .map((l) => (typeof l === 'string' ? l : JSON.stringify(l)))
            .join(' | ')}`,
        );
      return lines.find((l): l is Record<string, unknown> => typeof l === 'object' && l.message === 'ready');
    },
    Boolean,
    { timeoutMs: opts.readyTimeoutMs ?? 30_000, intervalMs: 20 },
  ).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  return {
    app,
    env,
    child,
    httpPort: Number(ready.httpPort),
    lines,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (!done) child.kill(signal);
      return exited;
    },
  };
}
