import { GuestImageBuildError } from './debian.js';

/**
 * Kernel module selection from `modules.dep` (what depmod writes): which .ko files a set of wanted
 * modules needs, in an order `insmod` can load them (dependencies first). Pure, so it is unit-tested.
 */

/** A module's canonical name: basename without `.ko[.xz|.zst|.gz]`, dashes as underscores (as modprobe does). */
export function moduleName(pathOrName: string): string {
  const base = pathOrName.split('/').pop() ?? pathOrName;
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/** module name → its path (relative to /lib/modules/<version>) and the paths it depends on. */
export type ModulesDep = Map<string, { path: string; deps: string[] }>;

export function parseModulesDep(text: string): ModulesDep {
  const out: ModulesDep = new Map();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const path = line.slice(0, colon).trim();
    const deps = line
      .slice(colon + 1)
      .split(/\s+/)
      .filter(Boolean);
    out.set(moduleName(path), { path, deps });
  }
  return out;
}

/** Names listed in `modules.builtin` (compiled into the kernel: nothing to load). */
export function parseModulesBuiltin(text: string): Set<string> {
  return new Set(
    text
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map(moduleName),
  );
}

export interface ModuleSelection {
  /** Module paths, each after everything it depends on. */
  ordered: string[];
  /** Wanted names that are built into the kernel. */
  builtin: string[];
}

/**
 * The closure of `wanted` over the dependency graph, dependencies first. A wanted module that is
 * neither in modules.dep nor built in is a build error (a typo, or a kernel that dropped it).
 */
export function resolveModules(
  dep: ModulesDep,
  wanted: readonly string[],
  builtin: ReadonlySet<string> = new Set(),
): ModuleSelection {
  const byPath = new Map([...dep.values()].map((m) => [m.path, m.deps]));
  const ordered: string[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (path: string): void => {
    if (done.has(path)) return;
    if (visiting.has(path)) throw new GuestImageBuildError(`modules.dep has a dependency cycle at ${path}`);
    const deps = byPath.get(path);
    if (!deps)
      throw new GuestImageBuildError(`modules.dep names ${path} as a dependency but has no line for it`);
    visiting.add(path);
    for (const d of deps) visit(d);
    visiting.delete(path);
    done.add(path);
    ordered.push(path);
  };
  const isBuiltin: string[] = [];
  const missing: string[] = [];
  for (const w of wanted) {
    const name = moduleName(w);
    const m = dep.get(name);
    if (m) visit(m.path);
    else if (builtin.has(name)) isBuiltin.push(name);
    else missing.push(w);
  }
  if (missing.length)
    throw new GuestImageBuildError(`kernel modules not found in modules.dep: ${missing.join(', ')}`);
  return { ordered, builtin: isBuiltin };
}
