import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';

/**
 * Two simulated hosts: network namespaces joined by a veth pair (FEASIBILITY §2). Needs root and
 * iproute2; {@link netnsUnavailable} says why not before any test relies on it.
 */

function ip(...args: string[]): { ok: boolean; out: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stderr ?? ''}${r.stdout ?? ''}${r.error?.message ?? ''}`.trim() };
}

/** Why network namespaces cannot be used here, or undefined when they can (probed by creating one). */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  const probe = `ccm-probe-${process.pid}`;
  const add = ip('netns', 'add', probe);
  if (!add.ok) return `\`ip netns add\` failed: ${add.out || 'iproute2 missing?'}`;
  ip('netns', 'del', probe);
  return undefined;
}

export interface HostPair {
  a: { ns: string; addr: string };
  b: { ns: string; addr: string };
  /** The network namespace inode of `ns` (compare with /proc/<pid>/ns/net). */
  inode(ns: string): number;
  destroy(): void;
}

/** Creates namespaces `<prefix>-a`/`-b` with 10.77.0.1/24 and 10.77.0.2/24 on a veth pair. */
export function createHostPair(prefix = `ccm-${process.pid}`): HostPair {
  const a = { ns: `${prefix}-a`, addr: '10.77.0.1' };
  const b = { ns: `${prefix}-b`, addr: '10.77.0.2' };
  const vethA = `cv${process.pid % 100000}a`;
  const vethB = `cv${process.pid % 100000}b`;
  const destroy = (): void => {
    ip('netns', 'del', a.ns);
    ip('netns', 'del', b.ns);
    ip('link', 'del', vethA);
  };
  const steps: string[][] = [
    ['netns', 'add', a.ns],
    ['netns', 'add', b.ns],
    ['-n', a.ns, 'link', 'set', 'lo', 'up'],
    ['-n', b.ns, 'link', 'set', 'lo', 'up'],
    ['link', 'add', vethA, 'type', 'veth', 'peer', 'name', vethB],
    ['link', 'set', vethA, 'netns', a.ns],
    ['link', 'set', vethB, 'netns', b.ns],
    ['-n', a.ns, 'addr', 'add', `${a.addr}/24`, 'dev', vethA],
    ['-n', b.ns, 'addr', 'add', `${b.addr}/24`, 'dev', vethB],
    ['-n', a.ns, 'link', 'set', vethA, 'up'],
    ['-n', b.ns, 'link', 'set', vethB, 'up'],
  ];
  for (const step of steps) {
    const r = ip(...step);
    if (!r.ok) {
      destroy();
      throw new Error(`ip ${step.join(' ')} failed: ${r.out}`);
    }
  }
  return { a, b, inode: (ns) => statSync(`/run/netns/${ns}`).ino, destroy };
}

/** Runs `ip ARGS…`, throwing with its output when it fails (test setup steps). */
export function ipOrThrow(...args: string[]): void {
  const r = ip(...args);
  if (!r.ok) throw new Error(`ip ${args.join(' ')} failed: ${r.out}`);
}
