import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ContainerSpec } from '../driver/driver.js';
import { netNames } from './netns.js';

/**
 * The runc driver's container: an OCI bundle made by the guest-agent, no image to pull. Its root is a
 * small skeleton on the guest's tmpfs whose /usr and /etc are read-only binds of the guest's read-only
 * root (so the same bundle made in another guest of the same image restores there), with a private
 * tmpfs at /tmp. The process is the guest's Node running {@link WORKLOAD}: it holds a heap of
 * `pages` 4 KiB pages (random bytes: nothing compresses), counts every 100 ms (the count lives in the
 * heap's first page and in JS memory), rewrites `dirtyPagesPerSec` random heap pages a second, and
 * writes the count to /tmp/counter in its tmpfs, which the agent reads through /proc/<pid>/root.
 * CRIU carries the tmpfs in the final dump, so the counter file moves with the process. With a
 * network (`CCM_PORT`), it also serves TCP on that port: each line it reads is answered with the
 * current count and a newline.
 */
export const WORKLOAD = [
  "const fs = require('fs');",
  'const pages = Number(process.env.CCM_HEAP_PAGES);',
  'const rate = Number(process.env.CCM_DIRTY_PAGES_PER_SEC);',
  "const heap = require('crypto').randomFillSync(Buffer.alloc(pages * 4096));",
  'let n = 0;',
  'let carry = 0;',
  'setInterval(() => {',
  '  n++;',
  '  heap.writeUInt32LE(n, 0);',
  '  for (carry += rate / 10; carry >= 1; carry--) heap.writeUInt32LE(n, Math.floor(Math.random() * pages) * 4096 + 8);',
  "  fs.writeFileSync('/tmp/counter.new', String(n));",
  "  fs.renameSync('/tmp/counter.new', '/tmp/counter');",
  '}, 100);',
  'const port = Number(process.env.CCM_PORT || 0);',
  "if (port) require('net').createServer((s) => {",
  "  let buf = '';",
  "  s.setEncoding('utf8');",
  "  s.on('error', () => undefined);",
  "  s.on('data', (d) => {",
  '    buf += d;',
  "    for (let i = buf.indexOf('\\n'); i >= 0; i = buf.indexOf('\\n')) {",
  '      buf = buf.slice(i + 1);',
  "      s.write(n + '\\n');",
  '    }',
  '  });',
  '}).listen(port);',
].join('\n');

/** Where the workload writes its count, inside the container. */
export const COUNTER_PATH = '/tmp/counter';

/** The root skeleton: directories, and links into the bound /usr (merged-/usr Debian). */
export const ROOTFS_DIRS = ['proc', 'dev', 'sys', 'tmp', 'usr', 'etc'] as const;
export const ROOTFS_LINKS: ReadonlyArray<readonly [string, string]> = [
  ['bin', 'usr/bin'],
  ['sbin', 'usr/sbin'],
  ['lib', 'usr/lib'],
  ['lib64', 'usr/lib64'],
];

const CAPS = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];

/**
 * The bundle's config.json for a container (runc's `runc spec` defaults, with CCM's mounts and process).
 * `criuConfig` is the CRIU configuration file runc hands CRIU for this container (annotation
 * `org.criu.config`; CRIU ignores a file that does not exist).
 */
export function bundleConfig(id: string, spec: ContainerSpec, criuConfig?: string): Record<string, unknown> {
  return {
    ociVersion: '1.0.2',
    ...(criuConfig ? { annotations: { 'org.criu.config': criuConfig } } : {}),
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: ['/usr/bin/node', '-e', WORKLOAD],
      env: [
        'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        `CCM_HEAP_PAGES=${spec.pages}`,
        `CCM_DIRTY_PAGES_PER_SEC=${spec.dirtyPagesPerSec}`,
        ...(spec.network ? [`CCM_PORT=${spec.network.port}`] : []),
        // libuv's io_uring is state CRIU cannot dump (see the seccomp filter below).
        'UV_USE_IO_URING=0',
      ],
      cwd: '/',
      capabilities: { bounding: CAPS, effective: CAPS, permitted: CAPS, ambient: CAPS },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: id,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
      },
      {
        destination: '/dev/shm',
        type: 'tmpfs',
        source: 'shm',
        options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
      },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      {
        destination: '/tmp',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', 'mode=1777', 'size=16m'],
      },
      { destination: '/usr', type: 'bind', source: '/usr', options: ['bind', 'ro', 'nosuid', 'nodev'] },
      { destination: '/etc', type: 'bind', source: '/etc', options: ['bind', 'ro', 'nosuid', 'nodev'] },
    ],
    linux: {
      // A network of its own: the namespace the guest-agent made, joined by path (runc marks it
      // external for CRIU on checkpoint and joins the same path on restore); else runc makes one.
      namespaces: [
        { type: 'pid' },
        spec.network ? { type: 'network', path: netNames(id).path } : { type: 'network' },
        { type: 'ipc' },
        { type: 'uts' },
        { type: 'mount' },
      ],
      maskedPaths: [
        '/proc/acpi',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/proc/scsi',
        '/sys/firmware',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
      // CRIU cannot dump an io_uring ("Unknown shit 600 (anon_inode:[io_uring])"), and libuv opens one
      // for its epoll even with UV_USE_IO_URING=0: io_uring_setup fails with ENOSYS, libuv falls back.
      seccomp: {
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: ['SCMP_ARCH_X86_64'],
        syscalls: [{ names: ['io_uring_setup'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }],
      },
    },
  };
}

/** Makes the bundle directory: the root skeleton and config.json (the same in every guest). */
export async function makeBundle(
  dir: string,
  id: string,
  spec: ContainerSpec,
  criuConfig?: string,
): Promise<void> {
  const rootfs = join(dir, 'rootfs');
  for (const d of ROOTFS_DIRS) await mkdir(join(rootfs, d), { recursive: true });
  for (const [name, to] of ROOTFS_LINKS) {
    await symlink(to, join(rootfs, name)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  }
  await writeFile(join(dir, 'config.json'), JSON.stringify(bundleConfig(id, spec, criuConfig), null, 2));
}
