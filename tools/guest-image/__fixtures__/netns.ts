import { statSync } from 'node:fs';
import { ip } from '@ccm/testing';

/**
 * Two simulated hosts: network namespaces joined by a veth pair (FEASIBILITY §2). Needs root and
 * iproute2; `netnsUnavailable` (libs/testing) says why not before any test relies on it.
 */

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
