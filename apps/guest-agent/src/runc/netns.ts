import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CcmError, type ContainerNetwork, GuestErrorCodes } from '@ccm/contracts';
import { type CommandRunner } from '@ccm/criu';

/** The guest's end of every container's veth: the containers' default gateway (a link-local /32). */
export const GATEWAY = '169.254.1.1';
/** The nftables table that locks a container's network (everything but loopback dropped). */
export const LOCK_TABLE = 'ccm_lock';

/**
 * The names of a container's network: the namespace (`/run/netns/<ns>`, the path its bundle joins) and
 * the veth pair's two ends (≤ 15 characters: a hash of the id). The same in every guest, so the
 * target makes the namespace the source's container left at the same path.
 */
export function netNames(id: string): { ns: string; path: string; host: string; peer: string } {
  const h = createHash('sha256').update(id).digest('hex').slice(0, 8);
  const ns = `ccm-${id}`;
  return { ns, path: `/run/netns/${ns}`, host: `ccmv${h}`, peer: `ccmc${h}` };
}

/**
 * The nftables ruleset of the lock: input and output of the container's namespace dropped but for
 * loopback. Made idempotent (the table is declared, deleted and made again in one transaction).
 */
export const LOCK_RULESET = [
  `table inet ${LOCK_TABLE} {}`,
  `delete table inet ${LOCK_TABLE}`,
  `table inet ${LOCK_TABLE} {`,
  '  chain input { type filter hook input priority -300; policy drop; iifname "lo" accept; }',
  '  chain output { type filter hook output priority -300; policy drop; oifname "lo" accept; }',
  '}',
  '',
].join('\n');

/**
 * A container's network namespace, made by the guest-agent (runc joins it by path, so on checkpoint
 * runc marks it external for CRIU and on restore hands CRIU the same path's namespace): loopback up,
 * the container's /32 on its end of a veth pair whose guest end holds {@link GATEWAY}, a host route in
 * the guest to the /32, IPv4 forwarding on. `lock` drops all but loopback traffic in the namespace:
 * the source holds it from before the final dump until the container is thawed or killed (so the
 * frozen source's kernel neither acknowledges data the target will never see nor sends a FIN or RST
 * when the container is killed); the target makes the namespace locked and unlocks it on resume (a
 * packet arriving before the restored socket exists is dropped, not reset).
 */
export class ContainerNetns {
  constructor(
    private readonly runner: CommandRunner,
    private readonly timeoutMs: number,
    /** Where the lock ruleset file is written. */
    private readonly dir: string,
  ) {}

  private async cmd(...argv: string[]): Promise<string> {
    const r = await this.runner.run(argv, { timeoutMs: this.timeoutMs });
    if (r.exitCode !== 0 || r.timedOut) {
      throw new CcmError(
        GuestErrorCodes.ContainerRuntimeFailed,
        `${argv.join(' ')} failed: ${(r.stderr || r.stdout).trim() || (r.timedOut ? 'timed out' : `exit ${String(r.exitCode)}`)}`,
        { retryable: false, effect: 'maybe', details: { command: argv[0], action: 'network' } },
      );
    }
    return r.stdout;
  }

  /** Makes the namespace (after removing any left of the same name); locked from the start if asked. */
  async create(id: string, net: ContainerNetwork, locked: boolean): Promise<void> {
    const n = netNames(id);
    await this.remove(id);
    await this.cmd('ip', 'netns', 'add', n.ns);
    try {
      if (locked) await this.lock(id);
      await this.cmd('ip', '-n', n.ns, 'link', 'set', 'lo', 'up');
      await this.cmd('ip', 'link', 'add', n.host, 'type', 'veth', 'peer', 'name', n.peer, 'netns', n.ns);
      await this.cmd('ip', '-n', n.ns, 'addr', 'add', `${net.address}/32`, 'dev', n.peer);
      await this.cmd('ip', '-n', n.ns, 'link', 'set', n.peer, 'up');
      await this.cmd('ip', '-n', n.ns, 'route', 'add', 'default', 'via', GATEWAY, 'dev', n.peer, 'onlink');
      await this.cmd('ip', 'addr', 'add', `${GATEWAY}/32`, 'dev', n.host);
      await this.cmd('ip', 'link', 'set', n.host, 'up');
      await this.cmd('ip', 'route', 'replace', `${net.address}/32`, 'dev', n.host);
      await this.dropGuestAddress(net.address);
      await writeFile('/proc/sys/net/ipv4/ip_forward', '1');
    } catch (e) {
      await this.remove(id);
      throw e;
    }
  }

  /**
   * Removes `address` from every interface of the guest that holds it (the overlay's, when the
   * network-overlay gave the guest the /32 before the container ran here): a guest holding its
   * container's /32 itself takes the packets into its own stack (the local table wins over the route
   * to the veth), and answers the container's connections with resets.
   */
  private async dropGuestAddress(address: string): Promise<void> {
    const held = await this.cmd('ip', '-o', '-4', 'addr', 'show', 'to', `${address}/32`);
    for (const dev of interfacesIn(held)) await this.cmd('ip', 'addr', 'del', `${address}/32`, 'dev', dev);
  }

  /** Drops all but loopback traffic in the container's namespace. */
  async lock(id: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const file = join(this.dir, `${netNames(id).ns}.lock.nft`);
    await writeFile(file, LOCK_RULESET);
    await this.cmd('ip', 'netns', 'exec', netNames(id).ns, 'nft', '-f', file);
  }

  /** Lifts the lock (the table is added first: unlocking an unlocked namespace is no error). */
  async unlock(id: string): Promise<void> {
    for (const verb of ['add', 'delete'])
      await this.cmd('ip', 'netns', 'exec', netNames(id).ns, 'nft', verb, 'table', 'inet', LOCK_TABLE);
  }

  /** Removes the namespace and the veth pair (and with it the guest's route); nothing if absent. */
  async remove(id: string): Promise<void> {
    const n = netNames(id);
    await this.runner
      .run(['ip', 'link', 'del', n.host], { timeoutMs: this.timeoutMs })
      .catch(() => undefined);
    await this.runner.run(['ip', 'netns', 'del', n.ns], { timeoutMs: this.timeoutMs }).catch(() => undefined);
  }
}

/** The interface names of `ip -o addr show` lines (`3: ccm-wg0    inet 10.0.0.4/32 scope global …`). */
export function interfacesIn(ipOneLine: string): string[] {
  return ipOneLine
    .split('\n')
    .map((l) => /^\d+:\s+([^\s@:]+)/.exec(l)?.[1])
    .filter((d): d is string => d !== undefined);
}
