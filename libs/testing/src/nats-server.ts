import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.js';
import { PollAbortError, pollUntil } from './poll.js';
import { spawnServer } from './server-process.js';

/** The oldest nats-server CCM runs on: per-filter consumer permissions and TERM with a reason. */
export const MIN_NATS_SERVER_VERSION = [2, 10] as const;

export class NatsServerMissingError extends Error {
  override readonly name = 'NatsServerMissingError';
}

/** The repository's `tools/trixie/nats-server` wrapper (trixie's 2.10 from the cached rootfs). */
function trixieWrapper(): string | undefined {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const p = join(dir, 'tools', 'trixie', 'nats-server');
    if (existsSync(p)) return p;
  }
  return undefined;
}

const checked = new Map<string, string>();

/** Refuses a nats-server older than {@link MIN_NATS_SERVER_VERSION}, naming what it found. */
function checkVersion(bin: string): string {
  const known = checked.get(bin);
  if (known) return known;
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 15_000 });
  const m = /v(\d+)\.(\d+)\.(\d+)/.exec(`${r.stdout}${r.stderr}`);
  if (r.status !== 0 || !m)
    throw new NatsServerMissingError(`${bin} --version failed: ${(r.stderr || r.stdout || '').trim()}`);
  const [major, minor] = [Number(m[1]), Number(m[2])];
  const [wantMajor, wantMinor] = MIN_NATS_SERVER_VERSION;
  if (major < wantMajor || (major === wantMajor && minor < wantMinor))
    throw new NatsServerMissingError(
      `${bin} is nats-server ${m[0]}; CCM needs ${wantMajor}.${wantMinor} or newer ` +
        '(per-filter consumer permissions, TERM with a reason): `bash tools/dev.sh setup` builds one',
    );
  checked.set(bin, m[0]);
  return m[0];
}

/**
 * The nats-server to run: `CCM_NATS_SERVER_BIN` when set, else trixie's 2.10 through the repository's
 * `tools/trixie/nats-server` (the rootfs `bash tools/trixie/rootfs.sh` builds once). Fails with what
 * to do when neither is there or the server is older than 2.10.
 */
export function ensureNatsServer(): string {
  const fromEnv = process.env['CCM_NATS_SERVER_BIN'];
  if (fromEnv) {
    if (!existsSync(fromEnv))
      throw new NatsServerMissingError(`CCM_NATS_SERVER_BIN=${fromEnv} does not exist`);
    checkVersion(fromEnv);
    return fromEnv;
  }
  const wrapper = trixieWrapper();
  const built = wrapper && spawnSync('bash', [join(dirname(wrapper), 'rootfs.sh'), '--check']).status === 0;
  if (!wrapper || !built)
    throw new NatsServerMissingError(
      'nats-server 2.10 is not available: run `bash tools/dev.sh setup` (it builds the trixie rootfs that ' +
        'tools/trixie/nats-server runs), or set CCM_NATS_SERVER_BIN to a nats-server 2.10 or newer',
    );
  checkVersion(wrapper);
  return wrapper;
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
  const bin = ensureNatsServer();
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
