import { run } from './exec.js';
import { interfaceAddress, interfaceName, netnsName } from './validate.js';

/** Creates a network namespace with its loopback up. */
export async function createNetns(name: string): Promise<void> {
  await run(['ip', 'netns', 'add', netnsName(name)]);
  await run(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
}

/** Deletes a namespace; one that is gone already is not an error. */
export async function deleteNetns(name: string): Promise<void> {
  await run(['ip', 'netns', 'del', netnsName(name)]).catch(() => undefined);
}

/** Links namespace `a` and `b` by a veth pair with the given addresses (the underlay between nodes). */
export async function linkNetns(
  a: { netns: string; ifname: string; address: string },
  b: { netns: string; ifname: string; address: string },
): Promise<void> {
  await run([
    'ip',
    'link',
    'add',
    interfaceName(a.ifname),
    'type',
    'veth',
    'peer',
    'name',
    interfaceName(b.ifname),
  ]);
  for (const end of [a, b]) {
    await run(['ip', 'link', 'set', end.ifname, 'netns', netnsName(end.netns)]);
    await run(['ip', '-n', end.netns, 'address', 'add', interfaceAddress(end.address), 'dev', end.ifname]);
    await run(['ip', '-n', end.netns, 'link', 'set', end.ifname, 'up']);
  }
}

/** Whether this process may create namespaces and TUN devices (root, /dev/net/tun, `ip`). */
export async function netnsSupport(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not root: cannot create network namespaces' };
  const { access, constants } = await import('node:fs/promises');
  try {
    await access('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    return { ok: false, reason: '/dev/net/tun is missing: wireguard-go cannot make its interface' };
  }
  for (const tool of [
    ['ip', '-V'],
    ['wg', '--version'],
    ['wireguard-go', '--version'],
  ]) {
    try {
      await run(tool, { timeoutMs: 5_000 });
    } catch (err) {
      return { ok: false, reason: `${tool[0]} unavailable: ${(err as Error).message}` };
    }
  }
  const probe = `ccm-probe-${process.pid}`;
  try {
    await createNetns(probe);
  } catch (err) {
    return { ok: false, reason: `cannot create a network namespace: ${(err as Error).message}` };
  } finally {
    await deleteNetns(probe);
  }
  return { ok: true };
}
