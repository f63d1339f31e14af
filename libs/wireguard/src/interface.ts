import { spawn, type ChildProcess } from 'node:child_process';
import { WgCommandFailedError, WgTimeoutError, WgToolMissingError } from './errors.js';
import { inNetns, run } from './exec.js';
import { type WgTarget } from './device.js';
import { interfaceName } from './validate.js';

/** `kernel`: `ip link add … type wireguard`; `userspace`: wireguard-go; `auto`: kernel where it loads. */
export type WgMode = 'auto' | 'kernel' | 'userspace';

/** How long wireguard-go may take to create its TUN interface (34 ms here, FEASIBILITY §4.1). */
export const DEFAULT_INTERFACE_TIMEOUT_MS = 5_000;

/** A WireGuard interface this process created; `destroy()` removes it and ends its wireguard-go. */
export interface WgInterface extends WgTarget {
  readonly mode: 'kernel' | 'userspace';
  /** The wireguard-go process (userspace mode). */
  readonly process?: ChildProcess;
  destroy(): Promise<void>;
}

export interface CreateOptions {
  readonly mode?: WgMode;
  readonly wireguardGo?: string;
  readonly timeoutMs?: number;
}

/**
 * Creates a WireGuard interface. In userspace mode the interface name must be unique on the machine,
 * not only in its namespace: wireguard-go's UAPI socket `/var/run/wireguard/<name>.sock` is shared by
 * every namespace (FEASIBILITY §4.1).
 */
export async function createInterface(t: WgTarget, opts: CreateOptions = {}): Promise<WgInterface> {
  const name = interfaceName(t.name);
  const mode = opts.mode ?? 'auto';
  if (mode !== 'userspace') {
    try {
      await run(['ip', 'link', 'add', name, 'type', 'wireguard'], { netns: t.netns });
      return { ...t, mode: 'kernel', destroy: () => deleteLink(t) };
    } catch (err) {
      if (mode === 'kernel' || !(err instanceof WgCommandFailedError)) throw err;
      if (!/not supported|Unknown device type|No such device/i.test(err.stderr)) throw err;
    }
  }
  return startWireguardGo(t, opts);
}

async function startWireguardGo(t: WgTarget, opts: CreateOptions): Promise<WgInterface> {
  const argv = inNetns([opts.wireguardGo ?? 'wireguard-go', t.name], t.netns);
  const child = spawn(argv[0], argv.slice(1), {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, WG_PROCESS_FOREGROUND: '1' },
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d.slice(0, 4000)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const spawnError = new Promise<never>((_, reject) =>
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new WgToolMissingError(argv[0], { cause: err }) : err),
    ),
  );
  const iface: WgInterface = {
    ...t,
    mode: 'userspace',
    process: child,
    destroy: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 2_000);
      await exited;
      clearTimeout(killer);
      await deleteLink(t);
    },
  };
  const timeoutMs = opts.timeoutMs ?? DEFAULT_INTERFACE_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const appeared = (async () => {
    for (;;) {
      if (child.exitCode !== null) throw new WgCommandFailedError(argv, child.exitCode, stderr);
      if (await linkExists(t)) return iface;
      if (Date.now() > deadline) throw new WgTimeoutError(`wireguard-go ${t.name}`, timeoutMs);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  try {
    return await Promise.race([appeared, spawnError]);
  } catch (err) {
    await iface.destroy().catch(() => undefined);
    throw err;
  }
}

async function linkExists(t: WgTarget): Promise<boolean> {
  return run(['ip', 'link', 'show', t.name], { netns: t.netns }).then(
    () => true,
    () => false,
  );
}

async function deleteLink(t: WgTarget): Promise<void> {
  if (await linkExists(t))
    await run(['ip', 'link', 'del', t.name], { netns: t.netns }).catch(() => undefined);
}
