import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pollUntil } from '@ccm/testing';

/** A built agent (tests that need a real one run it from dist/, as its own process). */
function agentEntry(app: AgentApp): string {
  for (let dir = import.meta.dirname; dirname(dir) !== dir; dir = dirname(dir)) {
    if (existsSync(join(dir, 'nx.json'))) return join(dir, 'dist', 'apps', app, 'src', 'main.js');
  }
  throw new Error('repository root (nx.json) not found');
}

export type AgentApp = 'host-agent' | 'guest-agent';

/** An agent process: stopped with SIGTERM (its drain), killed if it does not exit in time. */
export interface HostProcess {
  readonly child: ChildProcess;
  readonly output: string[];
  stop(): Promise<void>;
}

/** Starts the built host-agent with `env` and waits for its `ready` line. */
export const startHostAgent = (env: Record<string, string>): Promise<HostProcess> =>
  startAgent('host-agent', env);

/** Starts a built agent with `env` and waits for its `ready` line. */
export async function startAgent(app: AgentApp, env: Record<string, string>): Promise<HostProcess> {
  const entry = agentEntry(app);
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
