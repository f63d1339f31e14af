import { spawn, spawnSync } from 'node:child_process';
import { lstat, mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Script } from 'node:vm';
import { pollUntil } from '@ccm/testing';
import { describe, expect, it } from 'vitest';
import { bundleConfig, makeBundle, ROOTFS_DIRS, WORKLOAD } from './bundle.js';
import { netNames } from './netns.js';

/** The workload writes /tmp/counter: run on this host only in a mount namespace of its own. */
const unshareWorks =
  spawnSync('unshare', ['--mount', '--', 'mount', '-t', 'tmpfs', 'none', '/tmp'], { stdio: 'ignore' })
    .status === 0;
if (!unshareWorks) console.warn('[runc bundle] skipping the workload TCP test: no `unshare --mount` here');

const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address() as { port: number };
      s.close(() => resolve(a.port));
    });
  });

describe('runc bundle', () => {
  it('runs the Node workload with the heap and dirty rate of the spec, no shell', () => {
    const c = bundleConfig('ctr1', { pages: 8192, dirtyPagesPerSec: 256 }) as {
      process: { args: string[]; env: string[]; terminal: boolean };
      root: { path: string; readonly: boolean };
      hostname: string;
    };
    expect(c.process.args).toEqual(['/usr/bin/node', '-e', WORKLOAD]);
    expect(c.process.env).toEqual(
      expect.arrayContaining(['CCM_HEAP_PAGES=8192', 'CCM_DIRTY_PAGES_PER_SEC=256', 'UV_USE_IO_URING=0']),
    );
    expect(c.process.terminal).toBe(false);
    expect(c.root).toEqual({ path: 'rootfs', readonly: true });
    expect(c.hostname).toBe('ctr1');
  });

  it('names the CRIU configuration file runc hands CRIU when asked', () => {
    expect(bundleConfig('x', { pages: 1, dirtyPagesPerSec: 0 })).not.toHaveProperty('annotations');
    expect(bundleConfig('x', { pages: 1, dirtyPagesPerSec: 0 }, '/run/x.conf')).toMatchObject({
      annotations: { 'org.criu.config': '/run/x.conf' },
    });
  });

  it('mounts /usr and /etc read-only from the guest and gives /tmp its own tmpfs', () => {
    const c = bundleConfig('x', { pages: 1, dirtyPagesPerSec: 0 }) as {
      mounts: Array<{ destination: string; type: string; source: string; options?: string[] }>;
    };
    const at = (d: string) => c.mounts.find((m) => m.destination === d);
    expect(at('/usr')).toMatchObject({
      type: 'bind',
      source: '/usr',
      options: expect.arrayContaining(['ro']),
    });
    expect(at('/etc')).toMatchObject({
      type: 'bind',
      source: '/etc',
      options: expect.arrayContaining(['ro']),
    });
    expect(at('/tmp')).toMatchObject({ type: 'tmpfs' });
  });

  it('denies io_uring (CRIU cannot dump it) with ENOSYS, so libuv falls back to epoll', () => {
    const c = bundleConfig('x', { pages: 1, dirtyPagesPerSec: 0 }) as {
      linux: { seccomp: { defaultAction: string; syscalls: Array<{ names: string[]; errnoRet: number }> } };
    };
    expect(c.linux.seccomp.defaultAction).toBe('SCMP_ACT_ALLOW');
    expect(c.linux.seccomp.syscalls).toEqual([
      expect.objectContaining({ names: ['io_uring_setup'], errnoRet: 38 }),
    ]);
  });

  it('the workload counts into /tmp/counter and holds its heap', () => {
    expect(WORKLOAD).toMatch(/Buffer\.alloc\(pages \* 4096\)/);
    expect(WORKLOAD).toMatch(/\/tmp\/counter/);
    expect(() => new Script(WORKLOAD)).not.toThrow(); // it compiles
  });

  it('with a network: joins the agent-made namespace by path and tells the workload its port', () => {
    const c = bundleConfig('web1', {
      pages: 1,
      dirtyPagesPerSec: 0,
      network: { address: '10.218.0.7', port: 8080 },
    }) as { process: { env: string[] }; linux: { namespaces: Array<{ type: string; path?: string }> } };
    expect(c.process.env).toContain('CCM_PORT=8080');
    expect(c.linux.namespaces).toContainEqual({ type: 'network', path: '/run/netns/ccm-web1' });
    expect(netNames('web1').path).toBe('/run/netns/ccm-web1');
    const plain = bundleConfig('web1', { pages: 1, dirtyPagesPerSec: 0 }) as typeof c;
    expect(plain.linux.namespaces).toContainEqual({ type: 'network' });
    expect(plain.process.env.some((e) => e.startsWith('CCM_PORT='))).toBe(false);
  });

  it.skipIf(!unshareWorks)('the workload answers each line it reads on its port with its count', async () => {
    const port = await freePort();
    const child = spawn(
      'unshare',
      [
        '--mount',
        '--',
        'sh',
        '-c',
        'mount -t tmpfs none /tmp && exec "$0" -e "$1"',
        process.execPath,
        WORKLOAD,
      ],
      {
        stdio: 'ignore',
        env: { ...process.env, CCM_HEAP_PAGES: '4', CCM_DIRTY_PAGES_PER_SEC: '0', CCM_PORT: String(port) },
      },
    );
    try {
      const s = await pollUntil(
        'the workload listens',
        () =>
          new Promise<ReturnType<typeof connect>>((resolve, reject) => {
            const c = connect({ host: '127.0.0.1', port }, () => resolve(c)).once('error', reject);
          }),
        Boolean,
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      let got = '';
      s.setEncoding('utf8').on('data', (d: string) => (got += d));
      s.write('a\nb\n');
      await pollUntil(
        'two answers',
        () => got.split('\n').length,
        (n) => n >= 3,
        { timeoutMs: 5_000 },
      );
      const first = got.split('\n').slice(0, 2).map(Number);
      expect(first.every((n) => Number.isInteger(n) && n >= 0)).toBe(true);
      // The count goes on between answers.
      s.write('c\n');
      const later = await pollUntil(
        'a later, higher count',
        () => {
          s.write('d\n');
          return Math.max(...got.split('\n').filter(Boolean).map(Number));
        },
        (n) => n > first[1] + 2,
        { timeoutMs: 5_000, intervalMs: 100 },
      );
      expect(later).toBeGreaterThan(first[1]);
      s.destroy();
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('makes the root skeleton and config.json, again over an existing one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ccm-bundle-'));
    try {
      await makeBundle(dir, 'ctr1', { pages: 4, dirtyPagesPerSec: 1 });
      await makeBundle(dir, 'ctr1', { pages: 4, dirtyPagesPerSec: 1 });
      for (const d of ROOTFS_DIRS) expect((await lstat(join(dir, 'rootfs', d))).isDirectory()).toBe(true);
      expect(await readlink(join(dir, 'rootfs', 'lib64'))).toBe('usr/lib64');
      const c = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { hostname: string };
      expect(c.hostname).toBe('ctr1');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
