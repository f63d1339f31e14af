import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pollUntil } from './poll.js';

/** A CCM service run from dist/ as its own process (the test run's global setup builds dist/). */
export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly output: string[];
  /** SIGTERM (the service drains), SIGKILL if it has not exited in 15 s. */
  stop(): Promise<void>;
}

function entryOf(app: string): string {
  for (let dir = import.meta.dirname; dirname(dir) !== dir; dir = dirname(dir)) {
    if (existsSync(join(dir, 'nx.json'))) return join(dir, 'dist', 'apps', app, 'src', 'main.js');
  }
  throw new Error('repository root (nx.json) not found');
}

/** Starts the built service `app` (e.g. `key-broker`) with `env` and waits for its `ready` line. */
export async function startBuiltService(app: string, env: Record<string, string>): Promise<ServiceProcess> {
  const entry = entryOf(app);
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run node tools/build.mjs first`);
  const child = spawn(process.execPath, [entry], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  child.stdout.on('data', (b: Buffer) => output.push(b.toString()));
  child.stderr.on('data', (b: Buffer) => output.push(b.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await pollUntil(
      `${app} ready`,
      () => {
        if (child.exitCode !== null) throw new Error(`${app} exited: ${output.join('').slice(-500)}`);
        return output.join('').includes('"message":"ready"');
      },
      Boolean,
      { timeoutMs: 60_000, intervalMs: 50 },
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return { child, output, stop };
}
