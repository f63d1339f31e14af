import { spawnSync } from 'node:child_process';

/**
 * Hosts as network namespaces on a bridge in the root namespace (FEASIBILITY §2):
 *
 *     root: bridge 10.77.N.1/24 (NATS and Postgres may listen here too)
 *       ├── veth ── namespace 1: 10.77.N.2
 *       └── veth ── namespace 2: 10.77.N.3 …
 *
 * Whatever runs inside a namespace (a host-agent, a QEMU) listens for and sends migration streams on
 * that host's address, and the stream between two hosts crosses the bridge.
 *
 * With `guestBridge`, each namespace also gets a bridge of that name holding its veth end and its
 * address: a host-agent puts its guests' taps on it (a VM spec's `nics`), so guests sit on the same
 * segment as every host and the root bridge, and reach NATS there and each other directly (the lab's
 * guest underlay; {@link BridgedHosts.guestAddr} hands out their addresses). N comes from the pid (and
 * a caller's salt), so concurrent runs do not collide. Used by the e2e specs and the benchmarks.
 */

/** Runs `ip ARGS…` (no shell): whether it succeeded and what it printed. */
export function ip(...args: string[]): { ok: boolean; out: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stderr ?? ''}${r.stdout ?? ''}${r.error?.message ?? ''}`.trim() };
}

/** Runs `ip ARGS…`, throwing with its output when it fails (test setup steps). */
export function ipOrThrow(...args: string[]): void {
  const r = ip(...args);
  if (!r.ok) throw new Error(`ip ${args.join(' ')} failed: ${r.out}`);
}

/** Why network namespaces cannot be used here, or undefined when they can (probed by making one). */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  const probe = `ccm-probe-${process.pid}`;
  const add = ip('netns', 'add', probe);
  if (!add.ok) return `\`ip netns add\` failed: ${add.out || 'iproute2 missing?'}`;
  ip('netns', 'del', probe);
  return undefined;
}

/** Why namespaces and a bridge cannot be made here (undefined when they can): probed by making them. */
export function bridgedHostsUnavailable(): string | undefined {
  const netns = netnsUnavailable();
  if (netns) return netns;
  const br = ip('link', 'add', `ccmhp${process.pid % 10000}`, 'type', 'bridge');
  if (!br.ok) return `cannot make a bridge: ${br.out}`;
  ip('link', 'del', `ccmhp${process.pid % 10000}`);
  return undefined;
}

export interface BridgedHost {
  id: string;
  /** The network namespace's name (`ip netns exec <ns> …`). */
  ns: string;
  /** The host's address on the bridge. */
  addr: string;
}

export interface BridgedHosts {
  hosts: Record<string, BridgedHost>;
  /** The bridge's address in the root namespace (where shared services listen). */
  bridgeAddr: string;
  /** The bridge's subnet, e.g. 10.77.123.0/24. */
  cidr: string;
  /** The guest bridge's name in every namespace, when asked for. */
  guestBridge?: string;
  /** The address of the i-th guest on the segment (`10.77.N.(100+i)`), 0 ≤ i < 100. */
  guestAddr(i: number): string;
  /** Deletes the namespaces, the veths and the bridge. Safe to call twice. */
  destroy(): void;
}

/** Creates the bridge and one namespace per id; throws (after undoing what it made) when a step fails. */
export function createBridgedHosts(
  ids: readonly string[],
  salt = 0,
  opts: { guestBridge?: string } = {},
): BridgedHosts {
  const n = 100 + ((process.pid + salt) % 150);
  const tag = `ccmha${(process.pid + salt) % 10000}`;
  const bridge = `${tag}br`;
  const net = `10.77.${n}`;
  const steps: string[][] = [
    ['link', 'add', bridge, 'type', 'bridge'],
    ['addr', 'add', `${net}.1/24`, 'dev', bridge],
    ['link', 'set', bridge, 'up'],
  ];
  const hosts: Record<string, BridgedHost> = {};
  ids.forEach((id, i) => {
    const ns = `${tag}-${id}`;
    const addr = `${net}.${i + 2}`;
    const [outer, inner] = [`${tag}h${i}`, `${tag}g${i}`];
    steps.push(
      ['netns', 'add', ns],
      ['-n', ns, 'link', 'set', 'lo', 'up'],
      ['link', 'add', outer, 'type', 'veth', 'peer', 'name', inner],
      ['link', 'set', inner, 'netns', ns],
      ['link', 'set', outer, 'master', bridge, 'up'],
    );
    const gbr = opts.guestBridge;
    if (gbr) {
      steps.push(
        ['-n', ns, 'link', 'add', gbr, 'type', 'bridge'],
        ['-n', ns, 'link', 'set', inner, 'master', gbr],
        ['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', gbr],
        ['-n', ns, 'link', 'set', gbr, 'up'],
        ['-n', ns, 'link', 'set', inner, 'up'],
      );
    } else {
      steps.push(
        ['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', inner],
        ['-n', ns, 'link', 'set', inner, 'up'],
      );
    }
    hosts[id] = { id, ns, addr };
  });
  const destroy = (): void => {
    ids.forEach((_, i) => ip('link', 'del', `${tag}h${i}`));
    for (const h of Object.values(hosts)) ip('netns', 'del', h.ns);
    ip('link', 'del', bridge);
  };
  for (const step of steps) {
    const r = ip(...step);
    if (!r.ok) {
      destroy();
      throw new Error(`ip ${step.join(' ')} failed: ${r.out}`);
    }
  }
  const guestAddr = (i: number): string => {
    if (!Number.isInteger(i) || i < 0 || i >= 100) throw new Error(`guest index ${i} is not in 0..99`);
    return `${net}.${100 + i}`;
  };
  return {
    hosts,
    bridgeAddr: `${net}.1`,
    cidr: `${net}.0/24`,
    ...(opts.guestBridge ? { guestBridge: opts.guestBridge } : {}),
    guestAddr,
    destroy,
  };
}
