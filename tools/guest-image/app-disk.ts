import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { GuestImageBuildError, run } from './debian.js';

/**
 * A second read-only disk for the container guest holding one CCM app as built in dist/ (only the
 * files its entry reaches) plus the npm packages those files import and theirs, with the repository's
 * package.json (ESM). Built per run in seconds with `mkfs.ext4 -d`; the guest mounts it and runs
 * `node <mount>/dist/<entry>`.
 */

/** Module specifiers of static imports, re-exports and literal dynamic imports in compiled JS. */
export function importSpecifiers(js: string): string[] {
  const out = new Set<string>();
  for (const m of js.matchAll(/(?:^|[\s;}])(?:import|export)\s[^'"]*?\sfrom\s*["']([^"']+)["']/g))
    out.add(m[1]);
  for (const m of js.matchAll(/(?:^|[\s;}])import\s*["']([^"']+)["']/g)) out.add(m[1]);
  for (const m of js.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) out.add(m[1]);
  return [...out];
}

/** The npm package a bare specifier names (`@scope/pkg/sub` → `@scope/pkg`); undefined for relative and node: ones. */
export function packageOf(spec: string): string | undefined {
  if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:')) return undefined;
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** The dist/ files reachable from `entry` through relative imports, and the packages they import. */
export async function appClosure(entry: string): Promise<{ files: string[]; packages: string[] }> {
  const files = new Set<string>();
  const packages = new Set<string>();
  const queue = [resolve(entry)];
  while (queue.length) {
    const file = queue.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    const js = await readFile(file, 'utf8').catch(() => {
      throw new GuestImageBuildError(`${file} is missing (run npm run build)`);
    });
    for (const spec of importSpecifiers(js)) {
      const pkg = packageOf(spec);
      if (pkg) packages.add(pkg);
      else if (spec.startsWith('.')) queue.push(resolve(dirname(file), spec));
    }
  }
  return { files: [...files], packages: [...packages] };
}

/** `packages` and every package they depend on (dependencies, optional and peer ones that are installed). */
export async function packageClosure(nodeModules: string, packages: readonly string[]): Promise<string[]> {
  const done = new Set<string>();
  const queue = [...packages];
  while (queue.length) {
    const pkg = queue.pop()!;
    if (done.has(pkg)) continue;
    const manifest = join(nodeModules, pkg, 'package.json');
    if (!existsSync(manifest)) {
      if (packages.includes(pkg)) throw new GuestImageBuildError(`package ${pkg} is not in ${nodeModules}`);
      continue; // an optional or peer dependency that is not installed
    }
    done.add(pkg);
    const json = JSON.parse(await readFile(manifest, 'utf8')) as Record<string, Record<string, string>>;
    for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies'])
      queue.push(...Object.keys(json[field] ?? {}));
  }
  return [...done].sort();
}

export interface AppDisk {
  path: string;
  files: number;
  packages: string[];
  bytes: number;
}

/**
 * Writes `out` (ext4, label ccm-app): `dist/…` (the closure of `entry`, paths as under repoRoot),
 * `node_modules/…`, `package.json`, `extra` files (path inside the disk → contents) and `extraDirs`
 * (path inside the disk → a host directory copied there).
 */
export async function buildAppDisk(opts: {
  repoRoot: string;
  entry: string;
  out: string;
  extra?: Record<string, string | Buffer>;
  extraDirs?: Record<string, string>;
}): Promise<AppDisk> {
  const stage = `${opts.out}.d`;
  await rm(stage, { recursive: true, force: true });
  try {
    const { files, packages } = await appClosure(join(opts.repoRoot, opts.entry));
    for (const f of files) {
      const to = join(stage, relative(opts.repoRoot, f));
      await mkdir(dirname(to), { recursive: true });
      await cp(f, to);
    }
    const nodeModules = join(opts.repoRoot, 'node_modules');
    const all = await packageClosure(nodeModules, packages);
    for (const p of all) await cp(join(nodeModules, p), join(stage, 'node_modules', p), { recursive: true });
    await cp(join(opts.repoRoot, 'package.json'), join(stage, 'package.json'));
    for (const [path, data] of Object.entries(opts.extra ?? {})) {
      await mkdir(dirname(join(stage, path)), { recursive: true });
      await writeFile(join(stage, path), data);
    }
    for (const [path, from] of Object.entries(opts.extraDirs ?? {}))
      await cp(from, join(stage, path), { recursive: true });
    const bytes = Number(run('du', ['-sb', '--apparent-size', stage]).split(/\s/)[0]);
    const mib = Math.ceil((bytes * 1.3) / (1 << 20)) + 16;
    await rm(opts.out, { force: true });
    run('mkfs.ext4', [
      '-q',
      '-F',
      '-L',
      'ccm-app',
      '-O',
      '^has_journal',
      '-i',
      '4096',
      '-d',
      stage,
      opts.out,
      `${mib}M`,
    ]);
    return { path: opts.out, files: files.length, packages: all, bytes };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/** A file `sh` can source (`set -a; . FILE`): one `NAME='value'` line per variable. */
export function shellEnvFile(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([k, v]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
        throw new GuestImageBuildError(`not an environment variable name: ${k}`);
      return `${k}='${v.replace(/'/g, `'\\''`)}'\n`;
    })
    .join('');
}
