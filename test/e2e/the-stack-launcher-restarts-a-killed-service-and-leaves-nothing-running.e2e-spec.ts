import { chmod, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inboxPrefix, OPERATOR, PING_VERB, PingReplySchema, subjects } from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { connectNats, signedRequest } from '@ccm/messaging';
import { pollUntil, RawNatsClient } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPidRecords, RUN_DIR } from '../../tools/stack/pids.js';
import { STACK_FILE } from '../../tools/stack/stack.js';
import { startLauncher } from './support/launcher.js';
import { processesLeft, processesOf } from './support/process-table.js';

const mode = async (path: string) => (await stat(path)).mode & 0o777;
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('the stack launcher supervises what it starts', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ccm-supervise-'));
    // The embedded Postgres runs as the postgres user when we are root: it must be able to enter.
    await chmod(dir, 0o755);
  });
  afterAll(async () => {
    for (const p of await processesOf(dir, dir)) process.kill(p.pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('restarts a kill -9ed service, keeps its secrets 0600, makes only pinned host identities, and SIGTERM leaves nothing', async () => {
    const state = join(dir, 'restart');
    const tag = `supervise-${process.pid}-restart`;
    const launcher = startLauncher(state, tag, ['--host', 'h1']);
    try {
      await launcher.running();
      const keys = join(state, 'keys');
      // Secrets: stack.json holds the Postgres password; the keys dir holds every identity's seeds.
      expect(await mode(join(state, STACK_FILE))).toBe(0o600);
      expect(await mode(keys)).toBe(0o700);
      expect(await mode(join(state, 'logs'))).toBe(0o700);
      expect(await mode(join(state, RUN_DIR))).toBe(0o700);
      const keyFiles = await readdir(keys);
      const secrets = keyFiles.filter((f) => f.endsWith('.nk') || f.endsWith('.sign.pem'));
      expect(secrets.length).toBeGreaterThan(10);
      for (const f of secrets) expect(`${f} ${(await mode(join(keys, f))).toString(8)}`).toBe(`${f} 600`);
      // No identity speaks for every host: only the pinned host-agent of the one host started.
      expect(keyFiles.filter((f) => f.startsWith('host-agent')).sort()).toEqual([
        'host-agent@h1.nk',
        'host-agent@h1.sign.pem',
      ]);

      const { natsUrl } = JSON.parse(await readFile(join(state, STACK_FILE), 'utf8')) as { natsUrl: string };
      const raw = await RawNatsClient.connect({
        port: Number(new URL(natsUrl).port),
        seed: (await readFile(join(keys, 'host-agent@h1.nk'), 'utf8')).trim(),
        inboxPrefix: inboxPrefix('host-agent'),
      });
      try {
        const own = await raw.subscribeChecked(subjects.hostCmd('h1', PING_VERB), { queue: 'probe' });
        expect(own.ok).toBe(true);
        const foreign = await raw.subscribeChecked(subjects.hostCmd('h2', PING_VERB), {
          queue: 'host-agent',
        });
        expect(foreign.ok).toBe(false);
        expect(foreign.ok ? '' : foreign.error).toMatch(/permissions violation/i);
      } finally {
        raw.close();
      }

      const before = await readPidRecords(state);
      const broker = before.find((r) => r.name === 'key-broker');
      expect(broker).toBeDefined();
      process.kill(broker!.pid, 'SIGKILL');
      await pollUntil(
        'the launcher restarted key-broker',
        () => /key-broker restarted: pid \d+/.test(launcher.output()),
        Boolean,
        {
          timeoutMs: 60_000,
        },
      );
      expect(launcher.output()).toMatch(/key-broker died \(signal SIGKILL\); restarting in \d+ ms/);
      // Where each service's HTTP answers, as it started and after the restart.
      expect(launcher.output()).toMatch(/^\[stack\] key-broker +http:\/\/127\.0\.0\.1:\d+\/health$/m);
      expect(launcher.output()).toMatch(/^\[stack\] host-agent@h1 +http:\/\/127\.0\.0\.1:\d+\/health$/m);
      expect(launcher.output()).toMatch(/key-broker restarted: pid \d+, http:\/\/127\.0\.0\.1:\d+\/health/);
      const operator = await loadIdentity(keys, OPERATOR);
      const trust = await loadTrustStore(keys);
      const nc = await connectNats([natsUrl], operator, 'supervise-e2e');
      try {
        const reply = await pollUntil(
          'key-broker answers ping again',
          () =>
            signedRequest(
              nc,
              operator,
              trust,
              subjects.cmd('key-broker', PING_VERB),
              { message: 'back?' },
              PingReplySchema,
              {
                timeoutMs: 2_000,
              },
            ).catch(() => undefined),
          Boolean,
          { timeoutMs: 30_000 },
        );
        expect(reply.service).toBe('key-broker');
      } finally {
        await nc.close();
      }
      const after = await readPidRecords(state);
      const restarted = after.find((r) => r.name === 'key-broker');
      expect(restarted?.pid).not.toBe(broker!.pid);

      // SIGTERM to the launcher alone (not its group): it must stop the restarted child too.
      process.kill(launcher.child.pid!, 'SIGTERM');
      expect(await launcher.exited()).toBe(0);
      expect([...before, ...after].map((r) => r.pid).filter(alive)).toEqual([]);
      expect(await processesLeft(tag, state)).toEqual([]);
    } finally {
      if (launcher.exitCode() === undefined) process.kill(-launcher.child.pid!, 'SIGKILL');
    }
  }, 180_000);

  it('a SIGKILLed launcher leaves nothing running, and a start after a crash stops what is left', async () => {
    const state = join(dir, 'crash');
    const tag = `supervise-${process.pid}-crash`;
    const first = startLauncher(state, tag, ['--sim']);
    await first.running();
    const started = (await processesOf(tag, state)).length;
    // The launcher, its watchdog, NATS, Postgres and five services at least.
    expect(started).toBeGreaterThanOrEqual(9);
    process.kill(first.child.pid!, 'SIGKILL');
    await pollUntil(
      'the watchdog stopped everything',
      () => processesOf(tag, state),
      (p) => p.length === 0,
      {
        timeoutMs: 60_000,
      },
    );

    // Now a crash that takes the watchdog too (kill -9 of both): the services stay behind...
    const second = startLauncher(state, tag, ['--sim']);
    await second.running();
    const records = await readPidRecords(state);
    const watchdog = (await processesOf(tag, state)).find((p) => p.cmdline.includes('watchdog.js'));
    expect(watchdog).toBeDefined();
    process.kill(watchdog!.pid, 'SIGKILL');
    process.kill(second.child.pid!, 'SIGKILL');
    await second.exited();
    expect(records.map((r) => r.pid).filter(alive).length).toBe(records.length);
    // ...until the next start, which stops them before it starts anew.
    const third = startLauncher(state, tag, ['--sim']);
    try {
      await third.running();
      expect(third.output()).toMatch(/stopped \d+ process\(es\) a crashed run left running: .*key-broker/);
      expect(records.map((r) => r.pid).filter(alive)).toEqual([]);
      process.kill(third.child.pid!, 'SIGTERM');
      expect(await third.exited()).toBe(0);
      expect(await processesLeft(tag, state)).toEqual([]);
    } finally {
      if (third.exitCode() === undefined) process.kill(-third.child.pid!, 'SIGKILL');
    }
  }, 300_000);
});
