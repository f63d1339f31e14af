import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeCpio, type CpioEntry } from './cpio.js';
import {
  debVersion,
  downloadDebs,
  extractFromDeb,
  GuestImageBuildError,
  resolveKernelPackage,
  run,
} from './debian.js';
import {
  COUNTER_PATTERN,
  GUEST_FAULT_PATTERN,
  GUEST_READY_MARKER,
  INIT_SCRIPT,
  WORKLOAD_C,
} from './guest-sources.js';
import { extractVmlinux } from './kernel.js';

export { GuestImageBuildError } from './debian.js';
export { COUNTER_PATTERN, GUEST_FAULT_PATTERN, GUEST_READY_MARKER } from './guest-sources.js';

/** Overrides the cache root (images live in `<root>/<key>/`). */
export const GUEST_IMAGE_DIR_ENV = 'CCM_GUEST_IMAGE_DIR';
/** Bump when the build steps change in a way the hashed sources do not show. */
export const BUILDER_VERSION = 1;
export const KERNEL_METAPACKAGE = 'linux-image-amd64';
export const BUSYBOX_PACKAGE = 'busybox-static';
export const DEFAULT_DIRTY_MIB = 64;
export const DEFAULT_DIRTY_RATE_MBPS = 10;
const LOCK_TIMEOUT_MS = 10 * 60_000;

export interface GuestImageManifest {
  key: string;
  builderVersion: number;
  kernelPackage: string;
  kernelVersion: string;
  kernelCompression: string;
  busyboxVersion: string;
  vmlinuxBytes: number;
  initrdBytes: number;
  builtAt: string;
  /** Milliseconds per build stage. */
  stageMs: Record<string, number>;
}

/** A built tiny guest: boot it with `-kernel <kernel> -initrd <initrd> -append <guestKernelCommandLine()>`. */
export interface GuestImage {
  key: string;
  dir: string;
  /** Uncompressed PVH-bootable vmlinux. */
  kernel: string;
  /** Uncompressed newc initramfs with busybox, /init and the workload. */
  initrd: string;
  /** True when the image came from the cache. */
  cached: boolean;
  /** Time this call took (lookup, or the whole build). */
  elapsedMs: number;
  manifest: GuestImageManifest;
}

export interface EnsureGuestImageOptions {
  /** Cache root; default $CCM_GUEST_IMAGE_DIR, else $XDG_CACHE_HOME/ccm/guest-image or ~/.cache/ccm/guest-image. */
  cacheDir?: string;
  /** Rebuild even when the cache has the image. */
  force?: boolean;
  log?: (message: string) => void;
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env[GUEST_IMAGE_DIR_ENV]) return env[GUEST_IMAGE_DIR_ENV];
  const base = env['XDG_CACHE_HOME'] || join(homedir(), '.cache');
  return join(base, 'ccm', 'guest-image');
}

/** Hash of everything the builder puts into the image, except package versions (resolved at build time). */
export function guestImageKey(): string {
  const inputs = {
    builderVersion: BUILDER_VERSION,
    arch: 'amd64',
    packages: [KERNEL_METAPACKAGE, BUSYBOX_PACKAGE],
    workload: WORKLOAD_C,
    init: INIT_SCRIPT,
  };
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16);
}

/**
 * The VM spec that boots the tiny guest of `image` with `memoryMiB` of RAM, dirtying `dirtyMiB` MiB at
 * `dirtyRateMBps` MB/s ({@link guestKernelCommandLine}).
 */
export function tinyGuestSpec(
  image: Pick<GuestImage, 'kernel' | 'initrd'>,
  o: { memoryMiB: number; dirtyMiB: number; dirtyRateMBps: number },
): { memoryMiB: number; kernel: string; initrd: string; cmdline: string } {
  return {
    memoryMiB: o.memoryMiB,
    kernel: image.kernel,
    initrd: image.initrd,
    cmdline: guestKernelCommandLine({ dirtyMiB: o.dirtyMiB, dirtyRateMBps: o.dirtyRateMBps }),
  };
}

/** The kernel command line that makes the guest dirty `dirtyMiB` MiB at `dirtyRateMBps` MB/s. */
export function guestKernelCommandLine(
  opts: { dirtyMiB?: number; dirtyRateMBps?: number; extra?: string } = {},
): string {
  const mib = opts.dirtyMiB ?? DEFAULT_DIRTY_MIB;
  const rate = opts.dirtyRateMBps ?? DEFAULT_DIRTY_RATE_MBPS;
  return ['console=ttyS0', 'quiet', `ccm.dirty_mb=${mib}`, `ccm.dirty_rate=${rate}`, opts.extra]
    .filter(Boolean)
    .join(' ');
}

/** The heartbeat numbers in a serial log, in order. */
export function countersIn(serialText: string): number[] {
  return [...serialText.matchAll(COUNTER_PATTERN)].map((m) => Number(m[1]));
}

/** Reads a serial log (missing file = nothing yet) and returns its heartbeat numbers. */
export async function readCounters(serialLog: string): Promise<number[]> {
  return countersIn(await readFile(serialLog, 'utf8').catch(() => ''));
}

/** The first line of a serial log that shows the guest kernel faulting (oops, BUG, panic), if any. */
export async function guestFault(serialLog: string): Promise<string | undefined> {
  const text = await readFile(serialLog, 'utf8').catch(() => '');
  return GUEST_FAULT_PATTERN.exec(text)?.[0].trim();
}

/** Whether the serial log shows the guest's userspace is up. */
export async function guestIsReady(serialLog: string): Promise<boolean> {
  return (await readFile(serialLog, 'utf8').catch(() => '')).includes(GUEST_READY_MARKER);
}

/**
 * Returns the cached tiny guest, building it first when missing: the Debian kernel (linux-image-amd64's
 * current version) unpacked to a PVH vmlinux, plus an initramfs of busybox-static, /init and the
 * statically linked workload. Concurrent callers (parallel test files) share one build through a lock.
 */
export async function ensureGuestImage(opts: EnsureGuestImageOptions = {}): Promise<GuestImage> {
  const root = opts.cacheDir ?? defaultCacheDir();
  const key = guestImageKey();
  const dir = join(root, key);
  const out = await cachedBuild({
    root,
    key,
    force: opts.force,
    read: () => readManifest(dir),
    build: () => build(root, key, opts.log ?? (() => undefined)),
  });
  return { ...paths(dir, key), ...out };
}

/**
 * The cache protocol both guest flavors share: the manifest in `<root>/<key>/` when `read` finds it
 * complete, else `build` under the `<root>/<key>.lock` lock (looking again once the lock is held:
 * another process may have built it meanwhile). `canBuild` runs before a build is attempted.
 */
export async function cachedBuild<M>(opts: {
  root: string;
  key: string;
  force?: boolean;
  read: () => Promise<M | undefined>;
  build: () => Promise<M>;
  canBuild?: () => void;
}): Promise<{ manifest: M; cached: boolean; elapsedMs: number }> {
  const started = Date.now();
  await mkdir(opts.root, { recursive: true });
  const hit = async (): Promise<M | undefined> => (opts.force ? undefined : opts.read());
  const found = await hit();
  if (found) return { manifest: found, cached: true, elapsedMs: Date.now() - started };
  opts.canBuild?.();
  return withLock(join(opts.root, `${opts.key}.lock`), async () => {
    const meanwhile = await hit();
    const manifest = meanwhile ?? (await opts.build());
    return { manifest, cached: meanwhile !== undefined, elapsedMs: Date.now() - started };
  });
}

function paths(dir: string, key: string): Pick<GuestImage, 'key' | 'dir' | 'kernel' | 'initrd'> {
  return { key, dir, kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initramfs.cpio') };
}

async function readManifest(dir: string): Promise<GuestImageManifest | undefined> {
  try {
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as GuestImageManifest;
    const p = paths(dir, manifest.key);
    if (!existsSync(p.kernel) || !existsSync(p.initrd)) return undefined;
    return manifest;
  } catch {
    return undefined;
  }
}

async function build(root: string, key: string, log: (m: string) => void): Promise<GuestImageManifest> {
  const work = join(root, `${key}.build-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(join(work, 'debs'), { recursive: true });
  const stageMs: Record<string, number> = {};
  const stage = async <T>(name: string, fn: () => T | Promise<T>): Promise<T> => {
    const t0 = Date.now();
    const out = await fn();
    stageMs[name] = Date.now() - t0;
    log(`guest-image: ${name} ${stageMs[name]} ms`);
    return out;
  };
  try {
    const kernelPackage = await stage('resolve', () => resolveKernelPackage(KERNEL_METAPACKAGE));
    const debs = await stage('download', () =>
      downloadDebs([kernelPackage, BUSYBOX_PACKAGE], join(work, 'debs')),
    );
    const kdeb = debs.get(kernelPackage)!;
    const bdeb = debs.get(BUSYBOX_PACKAGE)!;
    const kernel = await stage('kernel', async () => {
      extractFromDeb(kdeb, work, './boot/vmlinuz-*');
      const [vmlinuz] = await readdir(join(work, 'boot'));
      if (!vmlinuz) throw new GuestImageBuildError(`${kernelPackage} has no /boot/vmlinuz-*`);
      return extractVmlinux(await readFile(join(work, 'boot', vmlinuz)));
    });
    const busybox = await stage('busybox', async () => {
      extractFromDeb(bdeb, work, './bin/busybox');
      return readFile(join(work, 'bin', 'busybox'));
    });
    const workload = await stage('workload', async () => {
      await writeFile(join(work, 'ccm-workload.c'), WORKLOAD_C);
      run('gcc', ['-O2', '-static', '-s', '-o', 'ccm-workload', 'ccm-workload.c'], { cwd: work });
      return readFile(join(work, 'ccm-workload'));
    });
    const initrd = await stage('initramfs', () => writeCpio(initramfsEntries(busybox, workload)));

    const out = join(work, 'image');
    await mkdir(out);
    await writeFile(join(out, 'vmlinux'), kernel.vmlinux);
    await writeFile(join(out, 'initramfs.cpio'), initrd);
    const manifest: GuestImageManifest = {
      key,
      builderVersion: BUILDER_VERSION,
      kernelPackage,
      kernelVersion: debVersion(kdeb),
      kernelCompression: kernel.format,
      busyboxVersion: debVersion(bdeb),
      vmlinuxBytes: kernel.vmlinux.length,
      initrdBytes: initrd.length,
      builtAt: new Date().toISOString(),
      stageMs,
    };
    await writeFile(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    const dir = join(root, key);
    await rm(dir, { recursive: true, force: true });
    await rename(out, dir);
    return manifest;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function initramfsEntries(busybox: Buffer, workload: Buffer): CpioEntry[] {
  const dirs = ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'root', 'etc'];
  return [
    ...dirs.map((path): CpioEntry => ({ kind: 'dir', path })),
    { kind: 'dir', path: 'tmp', mode: 0o1777 },
    // The kernel opens /dev/console for /init's stdio before anything mounts devtmpfs.
    { kind: 'char', path: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
    { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
    { kind: 'file', path: 'bin/ccm-workload', data: workload, mode: 0o755 },
    { kind: 'file', path: 'init', data: Buffer.from(INIT_SCRIPT), mode: 0o755 },
  ];
}

/**
 * A cross-process lock: an exclusively created file holding the owner's pid. A lock whose owner is
 * gone (a killed test run) is taken over.
 */
async function withLock<T>(lockPath: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    try {
      const fh = await open(lockPath, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number.parseInt(await readFile(lockPath, 'utf8').catch(() => ''), 10);
      const age = Date.now() - ((await stat(lockPath).catch(() => undefined))?.mtimeMs ?? Date.now());
      if ((Number.isInteger(owner) && !alive(owner)) || (!owner && age > 5_000)) {
        await rm(lockPath, { force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new GuestImageBuildError(`timed out waiting for the build lock ${lockPath}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockPath, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
