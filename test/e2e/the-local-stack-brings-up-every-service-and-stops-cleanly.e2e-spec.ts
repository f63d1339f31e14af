import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pollUntil, POSTGRES_LOG, REPO_ROOT, startPostgres, type RunningPostgres } from '@ccm/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STACK_FILE, startLocalStack } from '../../tools/stack/stack.js';

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the local stack launcher', () => {
  let dir: string;
  let external: RunningPostgres;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ccm-stack-e2e-'));
    // The embedded Postgres runs as the postgres user when we are root: it must be able to enter.
    await chmod(dir, 0o755);
    external = await startPostgres();
  });
  afterAll(async () => {
    await external?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs services against an operator-given Postgres, each healthy, and leaves no process behind', async () => {
    const stack = await startLocalStack({
      stateDir: join(dir, 'state'),
      databaseUrl: external.url,
      services: ['key-broker', 'vm-lifecycle'],
      hosts: ['host-x'],
    });
    const pids = stack.services.map((s) => s.child.pid);
    try {
      expect(existsSync(join(dir, 'state', STACK_FILE))).toBe(true);
      for (const s of stack.services) {
        const res = await fetch(`${s.httpUrl}/health`);
        expect(res.status).toBe(200);
      }
      // The services created their schemas in the external database, not in an embedded one.
      const c = new pg.Client(external.url);
      await c.connect();
      const schemas = await c.query<{ nspname: string }>(
        `SELECT nspname FROM pg_namespace WHERE nspname IN ('key_broker', 'vm_lifecycle', 'host_agent') ORDER BY 1`,
      );
      await c.end();
      expect(schemas.rows.map((r) => r.nspname)).toEqual(['host_agent', 'key_broker', 'vm_lifecycle']);
      expect(existsSync(join(dir, 'state', 'postgres'))).toBe(false);
    } finally {
      await stack.stop();
    }
    for (const s of stack.services) expect((await s.exited).code).toBe(0);
    expect(pids.filter(alive)).toEqual([]);
    expect(existsSync(join(dir, 'state', STACK_FILE))).toBe(false);
  });

  it('Ctrl-C in a terminal stops every service first and the embedded Postgres last', async () => {
    const state = join(dir, 'ctrl-c');
    // A terminal's foreground job: its own process group, which Ctrl-C signals as a whole.
    const launcher = spawn(
      process.execPath,
      [join(REPO_ROOT, 'dist/tools/stack/main.js'), '--state', state, '--sim'],
      {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    launcher.stdout.on('data', (d: Buffer) => (out += d.toString()));
    launcher.stderr.on('data', (d: Buffer) => (out += d.toString()));
    let exitCode: number | null | undefined;
    launcher.on('exit', (code) => (exitCode = code));
    try {
      await pollUntil(
        'the stack running',
        () => out.includes('Ctrl-C stops everything') || exitCode !== undefined,
        Boolean,
        {
          timeoutMs: 60_000,
        },
      );
      expect(out).toContain('Ctrl-C stops everything');
      process.kill(-launcher.pid!, 'SIGINT');
      await pollUntil('the launcher exited', () => exitCode !== undefined, Boolean, { timeoutMs: 60_000 });
    } finally {
      if (exitCode === undefined) process.kill(-launcher.pid!, 'SIGKILL');
    }
    expect(exitCode).toBe(0);

    const logs = join(state, 'logs');
    const stoppedAt: number[] = [];
    for (const file of await readdir(logs)) {
      const lines = (await readFile(join(logs, file), 'utf8'))
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { level: string; message: unknown; timestamp: number });
      expect(
        lines.filter((l) => l.level === 'error').map((l) => `${file}: ${JSON.stringify(l.message)}`),
      ).toEqual([]);
      const stopped = lines.filter((l) => l.message === 'stopped').at(-1);
      expect(stopped, `${file} logged 'stopped'`).toBeDefined();
      stoppedAt.push(stopped!.timestamp);
    }
    // Five services and the host-agents of host-a and host-b.
    expect(stoppedAt.length).toBe(7);
    // Postgres's own log: when it was asked to shut down.
    const pgLog = await readFile(join(state, 'postgres', POSTGRES_LOG), 'utf8');
    const request = /^(\S+ \S+) UTC \[\d+\] LOG:\s+received fast shutdown request/m.exec(pgLog);
    expect(request, 'Postgres received a fast shutdown request').not.toBeNull();
    const shutdownAt = Date.parse(`${request![1].replace(' ', 'T')}Z`);
    expect(shutdownAt).toBeGreaterThanOrEqual(Math.max(...stoppedAt));
  });
});
