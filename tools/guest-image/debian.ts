import { spawnSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
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

/** Overrides the Debian mirror debootstrap uses. */
export const DEBIAN_MIRROR_ENV = 'CCM_DEBIAN_MIRROR';
export const FALLBACK_DEBIAN_MIRROR = 'http://deb.debian.org/debian';

/**
 * The main Debian archive named by apt sources (deb822 `.sources` texts first, then one-line `.list`
 * texts), skipping security, updates and backports suites; undefined when none is named.
 */
export function mirrorFromAptSources(
  deb822: readonly string[],
  oneLine: readonly string[],
): string | undefined {
  for (const text of deb822) {
    for (const stanza of text.split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
      const suites = /^Suites:\s*(.+)$/m.exec(stanza)?.[1]?.split(/\s+/) ?? [];
      if (uri && suites.some((s) => !/security|updates|backports/.test(s))) return uri;
    }
  }
  for (const text of oneLine) {
    for (const line of text.split('\n')) {
      const m = /^deb\s+(?:\[[^\]]*\]\s+)?((?:https?|file):\S+)\s+(\S+)/.exec(line.trim());
      if (m && !/security|updates|backports/.test(m[2])) return m[1];
    }
  }
  return undefined;
}

/** $CCM_DEBIAN_MIRROR, else the host's apt sources' main archive, else deb.debian.org. */
export async function debianMirror(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const fromEnv = env[DEBIAN_MIRROR_ENV]?.trim();
  if (fromEnv) return fromEnv;
  const read = async (dir: string, ext: string): Promise<string[]> => {
    const names = await readdir(dir).catch(() => [] as string[]);
    return Promise.all(
      names.filter((n) => n.endsWith(ext)).map((n) => readFile(join(dir, n), 'utf8').catch(() => '')),
    );
  };
  const deb822 = await read('/etc/apt/sources.list.d', '.sources');
  const lists = [
    await readFile('/etc/apt/sources.list', 'utf8').catch(() => ''),
    ...(await read('/etc/apt/sources.list.d', '.list')),
  ];
  return mirrorFromAptSources(deb822, lists) ?? FALLBACK_DEBIAN_MIRROR;
}
