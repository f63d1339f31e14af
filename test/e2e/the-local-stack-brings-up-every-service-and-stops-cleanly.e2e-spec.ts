import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres, type RunningPostgres } from '@ccm/testing';
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
        const res = await fetch(`http://127.0.0.1:${s.httpPort}/health`);
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
});
