import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type ServiceName } from '@ccm/contracts';
import { PollAbortError, pollUntil } from './poll.js';
import { reapWithParent } from './reaper.js';

/** The repository root (the folder of nx.json), from the sources or from dist/. */
export const REPO_ROOT = (() => {
  for (let dir = import.meta.dirname; dirname(dir) !== dir; dir = dirname(dir)) {
    if (existsSync(join(dir, 'nx.json'))) return dir;
  }
  throw new Error('repository root (nx.json) not found');
})();

/** The built entry point of `service` (dist/apps/<service>/src/main.js, which the suite's setup compiles). */
export function builtServiceEntry(service: ServiceName | 'cli'): string {
  return join(REPO_ROOT, 'dist', 'apps', service, 'src', 'main.js');
}

export interface ServiceExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A CCM service running as its own process (in its own process group). */
export interface ServiceProcess {
  readonly app: ServiceName;
  /** The environment it was started with (beyond the inherited one). */
  readonly env: Record<string, string>;
  readonly child: ChildProcess;
  /** The HTTP port its `ready` line named. */
  readonly httpPort: number;
  /** Where its HTTP server answers: `http://<CCM_HTTP_HOST>:<httpPort>` (`/health`, `/metrics`). */
  readonly httpUrl: string;
  /** Every log line so far, parsed when it is JSON. */
  readonly lines: Array<Record<string, unknown> | string>;
  readonly exited: Promise<ServiceExit>;
  /**
   * Sends `signal` and waits for the exit. SIGTERM (the default) is the service's drain: if it has not
   * exited after {@link STOP_GRACE_MS}, SIGKILL follows.
   */
  stop(signal?: NodeJS.Signals): Promise<ServiceExit>;
  /** SIGKILL, like a crash. */
  kill(): Promise<ServiceExit>;
}

/** How long a SIGTERMed service may drain before {@link ServiceProcess.stop} SIGKILLs it. */
export const STOP_GRACE_MS = 15_000;

/**
 * The base URL of a service's HTTP server: the address it listens on (CCM_HTTP_HOST, from `env` or
 * else inherited, as the service reads it; 127.0.0.1 by default, e.g. a lab namespace's address for a
 * host-agent in it), a listen-on-every-address host as loopback, IPv6 in brackets.
 */
export function httpUrlOf(env: Record<string, string | undefined>, port: number): string {
  const host = env['CCM_HTTP_HOST'] ?? process.env['CCM_HTTP_HOST'] ?? '127.0.0.1';
  const to = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${to.includes(':') ? `[${to}]` : to}:${port}`;
}

export interface ServiceProcessOptions {
  /** Also append its stdout and stderr to this file. */
  logFile?: string;
  /** Default 60 s. */
  readyTimeoutMs?: number;
  /** Run it inside this network namespace (`ip netns exec` execs node, so `child.pid` is node's). */
  netns?: string;
  /**
   * Who stops it if this process ends first. `reaper` (the default): the reaper, however this process
   * ends (SIGKILL included). `exit`: only this process's own exit; for the stack's launcher, whose
   * crash leaves its services to its watchdog and to the next start.
   */
  orphans?: 'reaper' | 'exit';
}

/**
 * Starts the built `app` with `env` as its own process (own process group: a Ctrl-C goes to whoever
 * started it, which stops its services in order) and waits for its `ready` log line.
 */
export async function startServiceProcess(
  app: ServiceName,
  env: Record<string, string>,
  opts: ServiceProcessOptions = {},
): Promise<ServiceProcess> {
  const entry = builtServiceEntry(app);
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run node tools/build.mjs first`);
  const node = [process.execPath, '--enable-source-maps', entry];
  const [command, ...args] = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...node] : node;
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  if (opts.orphans === 'exit') {
    const reap = () => child.kill('SIGKILL');
    process.once('exit', reap);
    child.once('exit', () => process.removeListener('exit', reap));
  } else {
    reapWithParent(child, { group: false });
  }
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
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = new Promise<ServiceExit>((r) =>
    child.once('exit', (code, signal) => {
      log?.end();
      r({ code, signal });
    }),
  );
  let done = false;
  void exited.then(() => (done = true));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (done) return exited;
    child.kill(signal);
    const timer = signal === 'SIGTERM' ? setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS) : undefined;
    const exit = await exited;
    clearTimeout(timer);
    return exit;
  };
  const ready = await pollUntil(
    `${app} ready`,
    () => {
      if (done)
        throw new PollAbortError(
          `${app} exited before ready: ${lines
            .slice(-5)
            .map((l) => (typeof l === 'string' ? l : JSON.stringify(l)))
            .join(' | ')}`,
        );
      return lines.find((l): l is Record<string, unknown> => typeof l === 'object' && l.message === 'ready');
    },
    Boolean,
    { timeoutMs: opts.readyTimeoutMs ?? 60_000, intervalMs: 20 },
  ).catch(async (err: unknown) => {
    await stop('SIGKILL');
    throw err;
  });
  return {
    app,
    env,
    child,
    httpPort: Number(ready.httpPort),
    httpUrl: httpUrlOf(env, Number(ready.httpPort)),
    lines,
    exited,
    stop,
    kill: () => stop('SIGKILL'),
  };
}
