import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BOOTSTRAP, PERSON_SIGNERS, SERVICES, type ServiceName } from '@ccm/contracts';
import { generateKeys } from '@ccm/keys';
import { startNatsServer, startPostgres, type RunningNats, type RunningPostgres } from '@ccm/testing';
import { createStreams } from '../streams/streams.js';
import { startServiceProcess, type ServiceProcess } from './service-process.js';

export interface LocalStackOptions {
  /** Where NATS data, the Postgres cluster, keys and logs live; kept across runs. */
  stateDir: string;
  /** Use this Postgres instead of the embedded one. */
  databaseUrl?: string;
  /** Which services to start as processes (default: all but guest-agent, which runs inside VMs). */
  services?: ServiceName[];
  /** Host ids to start a host-agent for. */
  hosts?: string[];
  /** Extra settings of each host's agent (driver, run dir, ...). */
  hostEnv?: (hostId: string) => Record<string, string>;
  log?: (m: string) => void;
}

export interface LocalStack {
  natsUrl: string;
  databaseUrl: string;
  keysDir: string;
  services: ServiceProcess[];
  /** Environment for anything joining this stack (the CLI, an extra service). */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** What the CLI reads to find a running local stack. */
export const STACK_FILE = 'stack.json';

/**
 * Brings up CCM on one machine: nats-server with JetStream and per-identity NKEY permissions, the
 * embedded Postgres (or the one given by URL), and every service as its own process; each must
 * report healthy. Stops everything in reverse order, services first with SIGTERM.
 */
export async function startLocalStack(opts: LocalStackOptions): Promise<LocalStack> {
  const log = opts.log ?? (() => undefined);
  const keysDir = join(opts.stateDir, 'keys');
  const logsDir = join(opts.stateDir, 'logs');
  await mkdir(logsDir, { recursive: true });
  // The embedded Postgres runs as the postgres user when we are root: it must be able to enter.
  await chmod(opts.stateDir, 0o755);
  const { natsAuthFile } = await generateKeys(keysDir, {
    signers: [...SERVICES, ...PERSON_SIGNERS, BOOTSTRAP],
    hostIds: opts.hosts,
  });
  const started = Date.now();
  const [nats, pg] = await Promise.all([
    startNatsServer({ dir: join(opts.stateDir, 'nats'), extraConfig: await readFile(natsAuthFile, 'utf8') }),
    opts.databaseUrl
      ? Promise.resolve(undefined)
      : startPostgres({ dir: join(opts.stateDir, 'postgres'), persistent: true }),
  ]);
  // Services only check that the streams exist: the bootstrap identity creates them.
  try {
    await createStreams(nats.url, keysDir);
  } catch (err) {
    await Promise.allSettled([nats.stop(), pg?.stop()]);
    throw err;
  }
  const databaseUrl = opts.databaseUrl ?? (pg as RunningPostgres).url;
  log(
    `nats ${nats.url} and postgres ${opts.databaseUrl ? '(external)' : (pg as RunningPostgres).url} up in ${Date.now() - started} ms`,
  );
  const env = {
    CCM_NATS_URL: nats.url,
    CCM_KEYS_DIR: keysDir,
    CCM_DATABASE_URL: databaseUrl,
    CCM_HTTP_PORT: '0',
  };
  const services: ServiceProcess[] = [];
  const stopAll = async (n: RunningNats, p?: RunningPostgres) => {
    await Promise.allSettled([...services].reverse().map((s) => s.stop('SIGTERM')));
    await Promise.allSettled([n.stop(), p?.stop()]);
  };
  try {
    const wanted = opts.services ?? SERVICES.filter((s) => s !== 'guest-agent' && s !== 'host-agent');
    const procs = await Promise.all(
      wanted.map((app) =>
        startServiceProcess(
          app,
          { ...env, CCM_INSTANCE_ID: `${app}-1` },
          { logFile: join(logsDir, `${app}.log`) },
        ),
      ),
    );
    services.push(...procs);
    for (const host of opts.hosts ?? []) {
      services.push(
        await startServiceProcess(
          'host-agent',
          {
            ...env,
            CCM_HOST_ID: host,
            CCM_INSTANCE_ID: `host-agent-${host}`,
            ...(opts.hostEnv?.(host) ?? {}),
          },
          { logFile: join(logsDir, `host-agent-${host}.log`) },
        ),
      );
    }
    log(`${services.length} services ready after ${Date.now() - started} ms`);
  } catch (err) {
    await stopAll(nats, pg);
    throw err;
  }
  await writeFile(
    join(opts.stateDir, STACK_FILE),
    `${JSON.stringify({ natsUrl: nats.url, keysDir, databaseUrl, pid: process.pid }, null, 2)}\n`,
  );
  return {
    natsUrl: nats.url,
    databaseUrl,
    keysDir,
    services,
    env,
    stop: async () => {
      await stopAll(nats, pg);
      await rm(join(opts.stateDir, STACK_FILE), { force: true });
    },
  };
}
