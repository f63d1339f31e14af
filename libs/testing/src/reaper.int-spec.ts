import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pollUntil } from './poll.js';

const root = resolve(import.meta.dirname, '..', '..', '..');
const built = join(root, 'dist', 'libs', 'testing', 'src', 'server-process.js');

/** A pid that still runs (kill 0 probes without signalling). */
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * A parent process that starts a server (here `sleep`, in its own process group, with a child of its
 * own) with spawnServer, prints the server's pid, and then waits to be killed.
 */
const PARENT = `
import { spawnServer } from ${JSON.stringify(built)};
const s = spawnServer('sh', ['-c', 'sleep 600 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'ignore'] }, 'SIGKILL');
s.child.stdout.once('data', (d) => console.log(JSON.stringify({ server: s.child.pid, grandchild: Number(String(d).trim()) })));
setInterval(() => undefined, 1000);
`;

describe.skipIf(!existsSync(built))('a test process that is killed leaves no server behind', () => {
  it.each(['SIGKILL', 'SIGTERM'] as const)(
    'killed with %s: the reaper kills the server and its whole process group',
    async (signal) => {
      const parent = spawn(process.execPath, ['--input-type=module', '-e', PARENT], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      parent.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const pids = await pollUntil(
        'the parent reports its server',
        () => (out.includes('\n') ? (JSON.parse(out) as { server: number; grandchild: number }) : undefined),
        Boolean,
        { timeoutMs: 20_000 },
      );
      expect(alive(pids.server)).toBe(true);
      expect(alive(pids.grandchild)).toBe(true);
      const gone = new Promise((r) => parent.once('exit', r));
      parent.kill(signal);
      await gone;
      await pollUntil(
        'the server and its child are gone',
        () => !alive(pids.server) && !alive(pids.grandchild),
        Boolean,
        { timeoutMs: 10_000 },
      );
    },
  );
});
