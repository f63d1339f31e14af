import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { PollAbortError, pollUntil } from './poll.js';
import { spawnServer } from './server-process.js';

/** Where Debian's `nats-server` package puts the binary, then PATH. */
const CANDIDATES = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];

export class NatsServerMissingError extends Error {
  override readonly name = 'NatsServerMissingError';
}

function onPath(bin: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && p ? p : undefined;
}

/**
 * Finds nats-server; when missing on a Debian/Ubuntu host and running as root, installs Debian's
 * `nats-server` package (no npm package ships the server). Elsewhere it says exactly what to install.
 */
export function ensureNatsServer(opts: { install?: boolean; log?: (m: string) => void } = {}): string {
  const fromEnv = process.env['CCM_NATS_SERVER_BIN'];
  if (fromEnv) {
    if (!existsSync(fromEnv))
      throw new NatsServerMissingError(`CCM_NATS_SERVER_BIN=${fromEnv} does not exist`);
    return fromEnv;
  }
  const found = CANDIDATES.find((c) => existsSync(c)) ?? onPath('nats-server');
  if (found) return found;
  const isDebian = existsSync('/etc/debian_version') && existsSync('/usr/bin/apt-get');
  if (opts.install !== false && isDebian && process.getuid?.() === 0) {
    opts.log?.('nats-server not found: installing Debian package nats-server');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'nats-server'], {
      env,
      stdio: 'ignore',
    });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update', '-qq'], { env, stdio: 'ignore' });
      r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'nats-server'], {
        env,
        stdio: 'ignore',
      });
    }
    const after = CANDIDATES.find((c) => existsSync(c));
    if (r.status === 0 && after) return after;
  }
  throw new NatsServerMissingError(
    'nats-server (2.9 or newer, with JetStream) is not installed. On Debian/Ubuntu: `sudo apt-get install nats-server`; ' +
      'on macOS: `brew install nats-server`; elsewhere download it from the NATS project and set CCM_NATS_SERVER_BIN.',
  );
}

export interface NatsServerOptions {
  /** State dir; a fresh temp dir when omitted (and removed on stop). */
  dir?: string;
  port?: number;
  /** Where the client port comes from when `port` is not given (default: ask the kernel for a free one). */
  pickPort?: (host: string) => Promise<number>;
  /**
   * Address the client port listens on (default 127.0.0.1). Tests that run services in network
   * namespaces give the root-side address of a link they created, so only those namespaces reach it.
   */
  listenHost?: string;
  /** Extra nats-server config text appended to the generated config (e.g. authorization blocks). */
  extraConfig?: string;
  log?: (m: string) => void;
}

export interface RunningNats {
  url: string;
  port: number;
  monitorPort: number;
  dir: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts nats-server with JetStream on free ports (loopback unless `listenHost`) and waits until /healthz says ok. */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<RunningNats> {
  const bin = ensureNatsServer({ log: opts.log });
  const ownDir = !opts.dir;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'ccm-nats-')));
  const host = opts.listenHost ?? '127.0.0.1';
  await mkdir(join(dir, 'jetstream'), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    const port = opts.port ?? (await (opts.pickPort ?? freePort)(host));
    const monitorPort = await freePort();
    const conf = join(dir, 'nats.conf');
    await writeFile(
      conf,
      [
        `listen: "${host}:${port}"`,
        `http: "127.0.0.1:${monitorPort}"`,
        `jetstream { store_dir: ${JSON.stringify(join(dir, 'jetstream'))} }`,
        `max_payload: 8MB`,
        opts.extraConfig ?? '',
      ].join('\n'),
    );
    const server = spawnServer(bin, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] }, 'SIGKILL');
    let stderr = '';
    server.child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    try {
      await pollUntil(
        'nats-server /healthz',
        async () => {
          if (server.exited()) throw new PollAbortError(`nats-server exited: ${stderr.trim()}`);
          const res = await fetch(`http://127.0.0.1:${monitorPort}/healthz`);
          return res.ok;
        },
        (ok) => ok,
        { timeoutMs: 15_000, intervalMs: 10 },
      );
    } catch (err) {
      await server.stop('SIGKILL', 'SIGKILL', 0);
      if (attempt < 3 && /address already in use/i.test(stderr) && !opts.port) continue;
      throw err;
    }
    const stop = async (): Promise<void> => {
      await server.stop('SIGTERM', 'SIGKILL', 5_000);
      if (ownDir) await rm(dir, { recursive: true, force: true });
    };
    return { url: `nats://${host}:${port}`, port, monitorPort, dir, pid: server.child.pid ?? -1, stop };
  }
}
