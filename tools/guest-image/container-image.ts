import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { QemuGuestSpec } from '@ccm/qmp';
import {
  BOOT_MODULES,
  CONTAINER_PACKAGES,
  CONTAINER_SUITE,
  EXTRA_MODULES,
  FW_CFG_RUN,
  guestInitScript,
  INITRAMFS_INIT,
  INITRAMFS_MODULES,
  INITTAB,
} from './container-sources.js';
import { writeCpio, type CpioEntry } from './cpio.js';
import {
  debianMirror,
  debVersion,
  downloadDebs,
  GuestImageBuildError,
  resolveKernelPackage,
  run,
} from './debian.js';
import { cachedBuild, defaultCacheDir, KERNEL_METAPACKAGE } from './guest-image.js';
import { extractVmlinux } from './kernel.js';
import { parseModulesBuiltin, parseModulesDep, resolveModules } from './modules.js';

export { BOOT_FAILED_MARKER, FW_CFG_RUN, RUN_DONE_PATTERN } from './container-sources.js';

/**
 * The container guest: what a confidential VM that runs containers boots. The bookworm 6.1 kernel (as
 * the tiny guest) as a PVH vmlinux, a tiny initramfs that loads virtio_blk and ext4 and switch_roots,
 * and a read-only ext4 root disk with a Debian trixie minbase userspace (nodejs 20.19, criu 4.1, runc,
 * iproute2, wireguard-tools, nftables) plus the kernel modules CRIU needs. Two guests can share one
 * root disk (QEMU opens it read-only); the guest's writable places are tmpfs.
 */

/** Bump when the build steps change in a way the hashed inputs do not show. */
export const CONTAINER_BUILDER_VERSION = 1;
const EXT4_HEADROOM_BYTES = 64 << 20;
/** QEMU option values separate with `,`: a literal comma is written twice. */
const escapeOptionValue = (v: string): string => v.replace(/,/g, ',,');

export interface ContainerImageManifest {
  flavor: 'container';
  key: string;
  builderVersion: number;
  suite: string;
  mirror: string;
  kernelPackage: string;
  kernelVersion: string;
  /** Installed versions of the packages that matter (nodejs, criu, runc, …). */
  packageVersions: Record<string, string>;
  /** Module files in the root's /lib/modules and in the initramfs. */
  rootModules: number;
  initramfsModules: string[];
  vmlinuxBytes: number;
  initrdBytes: number;
  /** Apparent size of the ext4 image, and the rootfs bytes it holds. */
  rootDiskBytes: number;
  rootfsBytes: number;
  builtAt: string;
  stageMs: Record<string, number>;
}

/** A built container guest: see {@link containerGuestSpec} for how QEMU boots it. */
export interface ContainerImage {
  key: string;
  dir: string;
  kernel: string;
  initrd: string;
  /** Read-only ext4 root disk (virtio-blk, /dev/vda). */
  rootDisk: string;
  cached: boolean;
  elapsedMs: number;
  manifest: ContainerImageManifest;
}

/** Hash of everything the builder puts into the image, except package versions (resolved at build time). */
export function containerImageKey(): string {
  const inputs = {
    builderVersion: CONTAINER_BUILDER_VERSION,
    arch: 'amd64',
    kernel: KERNEL_METAPACKAGE,
    suite: CONTAINER_SUITE,
    packages: CONTAINER_PACKAGES,
    modules: { initramfs: INITRAMFS_MODULES, boot: BOOT_MODULES, extra: EXTRA_MODULES },
    initramfsInit: INITRAMFS_INIT,
    init: guestInitScript(BOOT_MODULES),
    inittab: INITTAB,
  };
  return `container-${createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16)}`;
}

/** Bad options for booting the container guest. */
export class ContainerGuestConfigError extends Error {
  override readonly name = 'ContainerGuestConfigError';
}

export interface ContainerGuestOptions {
  /** eth0's address, `ADDR/PREFIX` (needs a `tap`). */
  ip?: string;
  gateway?: string;
  hostname?: string;
  /** A path in the image to run once ready; default: the `runScript` passed over fw_cfg, if any. */
  run?: string;
  /** A host file QEMU passes as fw_cfg `opt/ccm/run`; the guest runs it once ready. */
  runScript?: string;
  /** A second read-only disk (/dev/vdb in the guest), e.g. an app disk from app-disk.ts. */
  appDisk?: string;
  /** Power the guest off when the run command ends. */
  poweroff?: boolean;
  /** A host tap device for eth0 (virtio-net). */
  tap?: string;
  mac?: string;
  memoryMiB?: number;
  /**
   * Guest-physical address of the page an attested launch places the secret table at (page-aligned,
   * above 1 MiB): the command line reserves it (`memmap=4K$0x…`) and names it (`ccm.secret=0x…`) for
   * the guest init, which hands the table to the run command when the page holds one.
   */
  secretGpa?: number;
  /** Appended to the kernel command line. */
  extraAppend?: string;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const HOSTNAME = /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;
const GUEST_PATH = /^\/[\w./-]+$/;
const IFNAME = /^[\w.-]{1,15}$/;
const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i;

/** The kernel command line for the container guest; rejects values the guest init could not parse. */
export function containerKernelCommandLine(opts: ContainerGuestOptions = {}): string {
  const parts = ['console=ttyS0', 'quiet', 'panic=-1'];
  if (opts.ip !== undefined) {
    const [addr, prefix, ...rest] = opts.ip.split('/');
    const p = Number(prefix);
    if (!addr || !IPV4.test(addr) || rest.length || !/^\d{1,2}$/.test(prefix ?? '') || p < 1 || p > 32)
      throw new ContainerGuestConfigError(`ip must be ADDR/PREFIX (IPv4), got ${JSON.stringify(opts.ip)}`);
    parts.push(`ccm.ip=${opts.ip}`);
  }
  if (opts.gateway !== undefined) {
    if (opts.ip === undefined) throw new ContainerGuestConfigError('gateway needs ip');
    if (!IPV4.test(opts.gateway))
      throw new ContainerGuestConfigError(
        `gateway must be an IPv4 address, got ${JSON.stringify(opts.gateway)}`,
      );
    parts.push(`ccm.gw=${opts.gateway}`);
  }
  if (opts.hostname !== undefined) {
    if (!HOSTNAME.test(opts.hostname))
      throw new ContainerGuestConfigError(
        `hostname is not a valid host name: ${JSON.stringify(opts.hostname)}`,
      );
    parts.push(`ccm.hostname=${opts.hostname}`);
  }
  if (opts.run !== undefined) {
    if (opts.run !== 'fw_cfg' && !GUEST_PATH.test(opts.run))
      throw new ContainerGuestConfigError(
        `run must be an absolute guest path or fw_cfg, got ${JSON.stringify(opts.run)}`,
      );
    parts.push(`ccm.run=${opts.run}`);
  } else if (opts.runScript !== undefined) parts.push('ccm.run=fw_cfg');
  if (opts.poweroff) parts.push('ccm.poweroff=1');
  if (opts.secretGpa !== undefined) {
    const g = opts.secretGpa;
    if (!Number.isSafeInteger(g) || g < 0x100000 || g % 4096 !== 0)
      throw new ContainerGuestConfigError(`secretGpa must be a page above 1 MiB, got ${g}`);
    parts.push(`memmap=4K$0x${g.toString(16)}`, `ccm.secret=0x${g.toString(16)}`);
  }
  if (opts.extraAppend) parts.push(opts.extraAppend);
  return parts.join(' ');
}

/** What @ccm/qmp's startQemu needs to boot the container guest (TCG: `-cpu max`, as the lab did). */
export function containerGuestSpec(
  image: Pick<ContainerImage, 'kernel' | 'initrd' | 'rootDisk'>,
  opts: ContainerGuestOptions = {},
): QemuGuestSpec {
  const extraArgs = [
    '-drive',
    `file=${escapeOptionValue(image.rootDisk)},if=virtio,format=raw,readonly=on`,
    '-no-reboot',
  ];
  if (opts.appDisk !== undefined)
    extraArgs.push('-drive', `file=${escapeOptionValue(opts.appDisk)},if=virtio,format=raw,readonly=on`);
  if (opts.runScript !== undefined)
    extraArgs.push('-fw_cfg', `name=${FW_CFG_RUN},file=${escapeOptionValue(opts.runScript)}`);
  if (opts.tap !== undefined) {
    if (!IFNAME.test(opts.tap))
      throw new ContainerGuestConfigError(`tap is not an interface name: ${opts.tap}`);
    if (opts.mac !== undefined && !MAC.test(opts.mac))
      throw new ContainerGuestConfigError(`mac is not a MAC address: ${opts.mac}`);
    extraArgs.push(
      '-netdev',
      `tap,id=n0,ifname=${opts.tap},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,netdev=n0${opts.mac ? `,mac=${opts.mac}` : ''}`,
    );
  } else if (opts.ip !== undefined) throw new ContainerGuestConfigError('ip needs a tap');
  return {
    kernel: image.kernel,
    initrd: image.initrd,
    append: containerKernelCommandLine(opts),
    memoryMiB: opts.memoryMiB ?? 1024,
    cpu: 'max',
    extraArgs,
  };
}

export interface EnsureContainerImageOptions {
  cacheDir?: string;
  force?: boolean;
  log?: (message: string) => void;
}

/** Why this process cannot build the container image (it needs root for debootstrap), or undefined. */
export function containerBuildUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'building the container guest needs root (debootstrap, chroot)';
  return undefined;
}

/**
 * Returns the cached container guest, building it first when missing (about a minute: debootstrap
 * dominates). Concurrent callers share one build through a lock file.
 */
export async function ensureContainerImage(opts: EnsureContainerImageOptions = {}): Promise<ContainerImage> {
  const root = opts.cacheDir ?? defaultCacheDir();
  const key = containerImageKey();
  const dir = join(root, key);
  const out = await cachedBuild({
    root,
    key,
    force: opts.force,
    read: () => readManifest(dir),
    build: () => build(root, key, opts.log ?? (() => undefined)),
    canBuild: () => {
      const unavailable = containerBuildUnavailable();
      if (unavailable)
        throw new GuestImageBuildError(unavailable, 'run it as root, or copy a built image into the cache');
    },
  });
  return { ...paths(dir, key), ...out };
}

function paths(
  dir: string,
  key: string,
): Pick<ContainerImage, 'key' | 'dir' | 'kernel' | 'initrd' | 'rootDisk'> {
  return {
    key,
    dir,
    kernel: join(dir, 'vmlinux'),
    initrd: join(dir, 'initramfs.cpio'),
    rootDisk: join(dir, 'root.ext4'),
  };
}

async function readManifest(dir: string): Promise<ContainerImageManifest | undefined> {
  try {
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as ContainerImageManifest;
    const p = paths(dir, manifest.key);
    if (![p.kernel, p.initrd, p.rootDisk].every((f) => existsSync(f))) return undefined;
    return manifest;
  } catch {
    return undefined;
  }
}

/** Runs a long command without blocking the event loop; its output goes to `logFile`. */
async function runLogged(cmd: string, args: string[], logFile: string): Promise<void> {
  const out = createWriteStream(logFile);
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' },
  });
  child.stdout.pipe(out, { end: false });
  child.stderr.pipe(out, { end: false });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  }).catch((err: Error) => {
    throw new GuestImageBuildError(`cannot run ${cmd}: ${err.message}`);
  });
  await new Promise((r) => out.end(r));
  if (code !== 0) {
    const tail = (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-15).join('\n');
    throw new GuestImageBuildError(`${cmd} ${args.join(' ')} exited with ${code}:\n${tail}`);
  }
}

/** Unmounts whatever is still mounted below `dir` (a debootstrap that failed half-way leaves proc, sys). */
async function unmountBelow(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mounts', 'utf8').catch(() => ''))
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    try {
      run('umount', ['-l', m]);
    } catch {
      // best effort: the rm below refuses to cross what is left
    }
  }
}

async function build(
  cacheRoot: string,
  key: string,
  log: (m: string) => void,
): Promise<ContainerImageManifest> {
  const work = join(cacheRoot, `${key}.build-${process.pid}`);
  await unmountBelow(work);
  await rm(work, { recursive: true, force: true, maxRetries: 0 });
  const rootfs = join(work, 'root');
  const debs = join(work, 'debs');
  await mkdir(debs, { recursive: true });
  const stageMs: Record<string, number> = {};
  const stage = async <T>(name: string, fn: () => T | Promise<T>): Promise<T> => {
    const t0 = Date.now();
    const out = await fn();
    stageMs[name] = Date.now() - t0;
    log(`guest-image (container): ${name} ${stageMs[name]} ms`);
    return out;
  };
  const chroot = (...args: string[]): string => run('chroot', [rootfs, ...args]);
  let bootstrap: Promise<void> | undefined;
  try {
    const mirror = await debianMirror();
    const kernelPackage = await stage('resolve', () => resolveKernelPackage(KERNEL_METAPACKAGE));
    // The rootfs and the kernel download are independent: debootstrap runs while the kernel unpacks.
    bootstrap = stage('debootstrap', () =>
      runLogged(
        'debootstrap',
        ['--variant=minbase', `--include=${CONTAINER_PACKAGES.join(',')}`, CONTAINER_SUITE, rootfs, mirror],
        join(work, 'debootstrap.log'),
      ),
    );
    bootstrap.catch(() => undefined); // awaited below, and in finally before the cleanup
    const kernelTree = join(work, 'kernel');
    const { kdeb, kernel } = await stage('kernel', async () => {
      const kdeb = (await downloadDebs([kernelPackage], debs)).get(kernelPackage)!;
      run('dpkg-deb', ['-x', kdeb, kernelTree]);
      const [vmlinuz] = (await readdir(join(kernelTree, 'boot'))).filter((f) => f.startsWith('vmlinuz-'));
      if (!vmlinuz) throw new GuestImageBuildError(`${kernelPackage} has no /boot/vmlinuz-*`);
      return { kdeb, kernel: extractVmlinux(await readFile(join(kernelTree, 'boot', vmlinuz))) };
    });
    await bootstrap;
    const kernelVersion = kernelPackage.replace(/^linux-image-/, '');

    const modules = await stage('modules', async () => {
      // The host need not have kmod: the guest's own depmod runs in the new rootfs, first over the
      // whole kernel tree (moved in, same filesystem), then over the selected modules.
      const staging = join(rootfs, 'tmp', 'ccm-kernel');
      await mkdir(join(staging, 'lib'), { recursive: true });
      await rename(join(kernelTree, 'lib', 'modules'), join(staging, 'lib', 'modules'));
      chroot('depmod', '-b', '/tmp/ccm-kernel', kernelVersion);
      const full = join(staging, 'lib', 'modules', kernelVersion);
      const dep = parseModulesDep(await readFile(join(full, 'modules.dep'), 'utf8'));
      const builtin = parseModulesBuiltin(await readFile(join(full, 'modules.builtin'), 'utf8'));
      const inRoot = resolveModules(dep, [...INITRAMFS_MODULES, ...BOOT_MODULES, ...EXTRA_MODULES], builtin);
      const inInitramfs = resolveModules(dep, INITRAMFS_MODULES, builtin);
      const target = join(rootfs, 'lib', 'modules', kernelVersion);
      for (const p of inRoot.ordered) {
        await mkdir(dirname(join(target, p)), { recursive: true });
        await copyFile(join(full, p), join(target, p));
      }
      for (const f of ['modules.order', 'modules.builtin', 'modules.builtin.modinfo'])
        await copyFile(join(full, f), join(target, f));
      chroot('depmod', kernelVersion);
      const initramfsModules = await Promise.all(
        inInitramfs.ordered.map(async (p) => ({ name: basename(p), data: await readFile(join(full, p)) })),
      );
      await rm(staging, { recursive: true, force: true });
      return { rootCount: inRoot.ordered.length, initramfs: initramfsModules };
    });

    const packageVersions = await stage('rootfs', async () => {
      await mkdir(join(rootfs, 'usr', 'lib', 'ccm'), { recursive: true });
      await writeFile(join(rootfs, 'usr', 'lib', 'ccm', 'ccm-init'), guestInitScript(BOOT_MODULES));
      await chmod(join(rootfs, 'usr', 'lib', 'ccm', 'ccm-init'), 0o755);
      await writeFile(join(rootfs, 'etc', 'inittab'), INITTAB);
      await writeFile(join(rootfs, 'etc', 'hostname'), 'ccm-guest\n');
      const versions = Object.fromEntries(
        chroot('dpkg-query', '-W', '-f=${Package} ${Version}\\n', ...CONTAINER_PACKAGES)
          .trim()
          .split('\n')
          .map((l) => l.split(' ') as [string, string]),
      );
      // What a guest never reads: docs, manuals, locales, apt's caches and lists.
      for (const p of [
        'usr/share/doc',
        'usr/share/man',
        'usr/share/info',
        'var/cache/apt',
        'var/lib/apt/lists',
      ])
        await rm(join(rootfs, p), { recursive: true, force: true });
      for (const l of await readdir(join(rootfs, 'usr', 'share', 'locale')).catch(() => []))
        if (!l.startsWith('C'))
          await rm(join(rootfs, 'usr', 'share', 'locale', l), { recursive: true, force: true });
      return versions;
    });

    const out = join(work, 'image');
    await mkdir(out);
    const rootfsBytes = await stage('ext4', () => {
      const bytes = Number(run('du', ['-sb', '--apparent-size', rootfs]).split(/\s/)[0]);
      const size = Math.ceil((bytes * 1.2 + EXT4_HEADROOM_BYTES) / (1 << 20));
      // No journal: the disk is only ever mounted read-only. -d copies the tree, owners and modes kept.
      run('mkfs.ext4', [
        '-q',
        '-F',
        '-L',
        'ccm-root',
        '-O',
        '^has_journal',
        '-i',
        '8192',
        '-d',
        rootfs,
        join(out, 'root.ext4'),
        `${size}M`,
      ]);
      return bytes;
    });
    const busybox = await readFile(join(rootfs, 'usr', 'bin', 'busybox'));
    const initrd = await stage('initramfs', () => writeCpio(initramfsEntries(busybox, modules.initramfs)));
    await writeFile(join(out, 'vmlinux'), kernel.vmlinux);
    await writeFile(join(out, 'initramfs.cpio'), initrd);
    const manifest: ContainerImageManifest = {
      flavor: 'container',
      key,
      builderVersion: CONTAINER_BUILDER_VERSION,
      suite: CONTAINER_SUITE,
      mirror,
      kernelPackage,
      kernelVersion: debVersion(kdeb),
      packageVersions,
      rootModules: modules.rootCount,
      initramfsModules: modules.initramfs.map((m) => m.name),
      vmlinuxBytes: kernel.vmlinux.length,
      initrdBytes: initrd.length,
      rootDiskBytes: (await stat(join(out, 'root.ext4'))).size,
      rootfsBytes,
      builtAt: new Date().toISOString(),
      stageMs,
    };
    await writeFile(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    const dir = join(cacheRoot, key);
    await rm(dir, { recursive: true, force: true });
    await rename(out, dir);
    return manifest;
  } finally {
    await bootstrap?.catch(() => undefined); // never remove the tree under a running debootstrap
    await unmountBelow(work);
    await rm(work, { recursive: true, force: true });
  }
}

function initramfsEntries(busybox: Buffer, modules: { name: string; data: Buffer }[]): CpioEntry[] {
  const dirs = ['bin', 'dev', 'proc', 'sys', 'etc', 'lib', 'lib/modules', 'newroot'];
  return [
    ...dirs.map((path): CpioEntry => ({ kind: 'dir', path })),
    { kind: 'char', path: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
    ...modules.map((m): CpioEntry => ({ kind: 'file', path: `lib/modules/${m.name}`, data: m.data })),
    {
      kind: 'file',
      path: 'etc/ccm-modules',
      data: Buffer.from(`${modules.map((m) => m.name).join('\n')}\n`),
    },
    { kind: 'file', path: 'init', data: Buffer.from(INITRAMFS_INIT), mode: 0o755 },
  ];
}
