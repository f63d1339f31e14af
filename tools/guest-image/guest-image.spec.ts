import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  countersIn,
  defaultCacheDir,
  ensureGuestImage,
  GUEST_IMAGE_DIR_ENV,
  guestImageKey,
  guestKernelCommandLine,
} from './guest-image.js';

describe('guest image helpers', () => {
  it('keys the cache on the builder inputs: stable across calls, 16 hex digits', () => {
    expect(guestImageKey()).toMatch(/^[0-9a-f]{16}$/);
    expect(guestImageKey()).toBe(guestImageKey());
  });

  it.each([
    [{ [GUEST_IMAGE_DIR_ENV]: '/x/images', XDG_CACHE_HOME: '/c' }, '/x/images'],
    [{ XDG_CACHE_HOME: '/c' }, '/c/ccm/guest-image'],
  ])('resolves the cache dir from %o', (env, dir) => {
    expect(defaultCacheDir(env)).toBe(dir);
  });

  it('defaults the cache dir to ~/.cache/ccm/guest-image', () => {
    expect(defaultCacheDir({})).toMatch(/\/\.cache\/ccm\/guest-image$/);
  });

  it('puts the dirtying parameters on the kernel command line', () => {
    expect(guestKernelCommandLine({ dirtyMiB: 32, dirtyRateMBps: 5 })).toBe(
      'console=ttyS0 quiet ccm.dirty_mb=32 ccm.dirty_rate=5',
    );
    expect(guestKernelCommandLine({ extra: 'panic=-1' })).toMatch(/ccm.dirty_rate=10 panic=-1$/);
  });

  it('reads the heartbeat numbers from a serial log', () => {
    const log =
      'CCM-GUEST-READY uptime=1.8\r\nCOUNTER 1 dirtiedMiB=10\r\nnoise COUNTER 9\r\nCOUNTER 2 dirtiedMiB=20\r\n';
    expect(countersIn(log)).toEqual([1, 2]);
  });
});

describe('ensureGuestImage cache lookup', () => {
  const dirs: string[] = [];
  afterAll(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it('returns a complete cached image without building', async () => {
    const root = await mkdtemp(join(tmpdir(), 'ccm-gi-'));
    dirs.push(root);
    const key = guestImageKey();
    await mkdir(join(root, key));
    await writeFile(join(root, key, 'vmlinux'), 'k');
    await writeFile(join(root, key, 'initramfs.cpio'), 'i');
    await writeFile(
      join(root, key, 'manifest.json'),
      JSON.stringify({ key, kernelPackage: 'linux-image-x' }),
    );
    const image = await ensureGuestImage({ cacheDir: root });
    expect(image).toMatchObject({ key, cached: true, kernel: join(root, key, 'vmlinux') });
    expect(image.manifest.kernelPackage).toBe('linux-image-x');
  });
});
