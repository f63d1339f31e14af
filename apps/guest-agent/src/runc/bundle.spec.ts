import { lstat, mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Script } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { bundleConfig, makeBundle, ROOTFS_DIRS, WORKLOAD } from './bundle.js';

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
