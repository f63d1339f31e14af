import { spawnSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The few Debian tools the builder needs (apt-cache, apt-get download, dpkg-deb, tar). Nothing is
 * installed on the host: packages are only downloaded and unpacked into the build directory.
 */

export class GuestImageBuildError extends Error {
  override readonly name = 'GuestImageBuildError';
  constructor(
    message: string,
    /** What to do about it, for the CLI. */
    readonly suggestion?: string,
  ) {
    super(suggestion ? `${message} (${suggestion})` : message);
  }
}

export function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd,
    encoding: 'utf8',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' },
    maxBuffer: 64 << 20,
  });
  if (r.error) throw new GuestImageBuildError(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    const out = `${r.stderr}${r.stdout}`.trim().split('\n').slice(-15).join('\n');
    throw new GuestImageBuildError(`${cmd} ${args.join(' ')} exited with ${r.status}:\n${out}`);
  }
  return r.stdout;
}

const isRoot = (): boolean => process.getuid?.() === 0;

/** Resolves a metapackage (e.g. linux-image-amd64) to the versioned package it depends on. */
export function resolveDependency(meta: string, prefix: string): string | undefined {
  const r = spawnSync('apt-cache', ['depends', meta], {
    encoding: 'utf8',
    env: { ...process.env, LC_ALL: 'C' },
  });
  if (r.status !== 0) return undefined;
  const m = new RegExp(`^\\s*Depends:\\s*(${prefix}[^\\s<>]+)`, 'm').exec(r.stdout);
  return m?.[1];
}

/**
 * Like {@link resolveDependency}, refreshing the package lists once (as root) when apt knows nothing,
 * as on a fresh container whose lists were cleaned.
 */
export function resolveKernelPackage(meta = 'linux-image-amd64'): string {
  let pkg = resolveDependency(meta, 'linux-image-');
  if (!pkg && isRoot()) {
    run('apt-get', ['update', '-qq']);
    pkg = resolveDependency(meta, 'linux-image-');
  }
  if (!pkg) {
    throw new GuestImageBuildError(
      `apt-cache cannot resolve ${meta}`,
      isRoot() ? 'check the Debian sources in /etc/apt' : 'run `sudo apt-get update` first',
    );
  }
  return pkg;
}

/** `apt-get download` into `dir`; returns package → .deb path. Retries once after `apt-get update`. */
export async function downloadDebs(packages: string[], dir: string): Promise<Map<string, string>> {
  try {
    run('apt-get', ['download', '-q', ...packages], { cwd: dir });
  } catch (err) {
    if (!isRoot()) throw err;
    run('apt-get', ['update', '-qq']);
    run('apt-get', ['download', '-q', ...packages], { cwd: dir });
  }
  const files = (await readdir(dir)).filter((f) => f.endsWith('.deb'));
  const found = new Map<string, string>();
  for (const pkg of packages) {
    const file = files.find((f) => f.startsWith(`${pkg}_`));
    if (!file) throw new GuestImageBuildError(`apt-get download produced no .deb for ${pkg}`);
    found.set(pkg, join(dir, file));
  }
  return found;
}

export function debVersion(deb: string): string {
  return run('dpkg-deb', ['--field', deb, 'Version']).trim();
}

/** Extracts only the members matching `pattern` (tar wildcard, e.g. `./boot/vmlinuz-*`) of a .deb. */
export function extractFromDeb(deb: string, into: string, pattern: string): void {
  run('bash', [
    '-c',
    'set -o pipefail; dpkg-deb --fsys-tarfile "$1" | tar -x -f - -C "$2" --wildcards "$3"',
    'bash',
    deb,
    into,
    pattern,
  ]);
}
