import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WgInvalidArgumentError } from './errors.js';
import { run } from './exec.js';
import {
  allowedIps,
  endpoint,
  formatCidr,
  interfaceName,
  interfaceAddress,
  parseCidr,
  wgKey,
} from './validate.js';

/** Where an interface lives: its name and, unless it is in the caller's own, its network namespace. */
export interface WgTarget {
  readonly name: string;
  readonly netns?: string;
}

/** One peer as `wg set` takes it. Every field is validated before anything runs. */
export interface PeerSpec {
  readonly publicKey: string;
  /** Remove the peer instead (the other fields are ignored). */
  readonly remove?: boolean;
  readonly endpoint?: string;
  /** Replaces the peer's allowed IPs (an empty list clears them). Omitted: left as they are. */
  readonly allowedIps?: readonly string[];
  readonly persistentKeepaliveS?: number;
}

/** A peer as `wg show dump` reports it. */
export interface PeerState {
  readonly publicKey: string;
  readonly endpoint: string | undefined;
  readonly allowedIps: string[];
  /** Unix ms of the latest handshake, or undefined before the first. */
  readonly latestHandshakeMs: number | undefined;
  readonly rxBytes: number;
  readonly txBytes: number;
}

/** An interface's public state (its private key is never read back). */
export interface DeviceState {
  readonly publicKey: string;
  readonly listenPort: number;
  readonly peers: PeerState[];
}

const where = (t: WgTarget) => ({ netns: t.netns });

/**
 * Sets the private key and the listen port. The key goes through a 0600 file in a private temp dir,
 * removed at once (never argv, where any process could read it; `wg` cannot read it from a pipe).
 */
export async function configureDevice(
  t: WgTarget,
  cfg: { privateKey: string; listenPort: number },
): Promise<void> {
  if (!Number.isInteger(cfg.listenPort) || cfg.listenPort < 1 || cfg.listenPort > 65535) {
    throw new WgInvalidArgumentError('listen port', String(cfg.listenPort), '1-65535');
  }
  const key = wgKey(cfg.privateKey);
  const dir = await mkdtemp(join(tmpdir(), 'ccm-wg-'));
  try {
    const file = join(dir, 'key');
    await writeFile(file, `${key}\n`, { mode: 0o600 });
    const argv = [
      'wg',
      'set',
      interfaceName(t.name),
      'private-key',
      file,
      'listen-port',
      String(cfg.listenPort),
    ];
    await run(argv, where(t));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The argv of one `wg set` carrying every peer change: WireGuard applies it as one configuration step. */
export function setPeersArgv(name: string, peers: readonly PeerSpec[]): string[] {
  const argv = ['wg', 'set', interfaceName(name)];
  for (const p of peers) {
    argv.push('peer', wgKey(p.publicKey));
    if (p.remove) {
      argv.push('remove');
      continue;
    }
    if (p.endpoint !== undefined) argv.push('endpoint', endpoint(p.endpoint));
    if (p.allowedIps !== undefined) argv.push('allowed-ips', allowedIps(p.allowedIps).join(','));
    if (p.persistentKeepaliveS !== undefined) {
      argv.push(
        'persistent-keepalive',
        String(Math.max(0, Math.min(65535, Math.floor(p.persistentKeepaliveS)))),
      );
    }
  }
  return argv;
}

/**
 * Adds, changes or removes peers in one `wg set`. An allowed-IPs entry given to one peer is taken from
 * any other peer of the interface that had it, so moving a /32 is this one call.
 */
export async function setPeers(t: WgTarget, peers: readonly PeerSpec[]): Promise<void> {
  if (peers.length === 0) return;
  await run(setPeersArgv(t.name, peers), where(t));
}

/** Parses `wg show <if> dump` (tab separated; the first line is the interface, one line per peer). */
export function parseDump(text: string): DeviceState {
  const lines = text.trim().split('\n');
  const dev = lines[0].split('\t');
  const peers = lines.slice(1).map((line): PeerState => {
    const f = line.split('\t');
    const hs = Number(f[4]);
    return {
      publicKey: f[0],
      endpoint: f[2] === '(none)' ? undefined : f[2],
      allowedIps: f[3] === '(none)' || !f[3] ? [] : f[3].split(','),
      latestHandshakeMs: hs > 0 ? hs * 1000 : undefined,
      rxBytes: Number(f[5]),
      txBytes: Number(f[6]),
    };
  });
  return { publicKey: dev[1], listenPort: Number(dev[2]), peers };
}

export async function showDevice(t: WgTarget): Promise<DeviceState> {
  return parseDump(await run(['wg', 'show', interfaceName(t.name), 'dump'], where(t)));
}

/** Adds an address (e.g. the node's or a workload's /32) to the interface; an existing one is kept. */
export async function addAddress(t: WgTarget, cidr: string): Promise<void> {
  await run(['ip', 'address', 'replace', interfaceAddress(cidr), 'dev', interfaceName(t.name)], where(t));
}

/** Removes an address; one that is not there is not an error. */
export async function removeAddress(t: WgTarget, cidr: string): Promise<void> {
  const addr = interfaceAddress(cidr);
  const out = await run(['ip', '-o', 'address', 'show', 'dev', interfaceName(t.name)], where(t));
  if (!out.includes(` ${addr} `)) return;
  await run(['ip', 'address', 'del', addr, 'dev', t.name], where(t));
}

/** Adds a route for `cidr` through the interface (the overlay's network on a node). */
export async function addRoute(t: WgTarget, cidr: string): Promise<void> {
  await run(['ip', 'route', 'replace', formatCidr(parseCidr(cidr)), 'dev', interfaceName(t.name)], where(t));
}

export async function linkUp(t: WgTarget): Promise<void> {
  await run(['ip', 'link', 'set', interfaceName(t.name), 'up'], where(t));
}
