import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type ServiceName } from '@ccm/contracts';
import { PollAbortError, pollUntil } from './poll.js';
import { reapWithParent } from './reaper.js';

/** The built entry point of `service` (dist/apps/<service>/src/main.js, which the suite's setup compiles). */
export function builtServiceEntry(service: ServiceName | 'cli'): string {
  for (let dir = import.meta.dirname; dirname(dir) !== dir; dir = dirname(dir)) {
    if (existsSync(join(dir, 'nx.json'))) return join(dir, 'dist', 'apps', service, 'src', 'main.js');
  }
  throw new Error('repository root (nx.json) not found');
}

/** A service running as its own process: stopped with SIGTERM (its drain), killed if it does not exit in time. */
export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly output: string[];
  stop(): Promise<void>;
  /** SIGKILL, like a crash. */
  kill(): Promise<void>;
}

/** Starts the built `service` with `env` and waits for its `ready` line. */
export async function startServiceProcess(
  service: ServiceName,
  env: Record<string, string>,
): Promise<ServiceProcess> {
  const entry = builtServiceEntry(service);
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run node tools/build.mjs first`);
  const child = spawn(process.execPath, [entry], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  reapWithParent(child, { group: false });
  const output: string[] = [];
  child.stdout.on('data', (b: Buffer) => output.push(b.toString()));
  child.stderr.on('data', (b: Buffer) => output.push(b.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const stop = async () => {
    if (gone()) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  const kill = async () => {
    if (!gone()) child.kill('SIGKILL');
    await exited;
  };
  try {
    await pollUntil(
      `${service} ready`,
      () => {
        if (child.exitCode !== null)
          throw new PollAbortError(`${service} exited: ${output.join('').slice(-500)}`);
        return output.join('').includes('"message":"ready"');
      },
      Boolean,
      { timeoutMs: 60_000, intervalMs: 50 },
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return { child, output, stop, kill };
}
