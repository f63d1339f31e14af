import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { eventsRetentionFromEnv } from '@ccm/config';
import { BOOTSTRAP, PERSON_SIGNERS, SERVICES, type EventsRetention, type ServiceName } from '@ccm/contracts';
import { generateKeys } from '@ccm/keys';
import {
  startNatsServer,
  startPostgres,
  type RunningNats,
  type RunningPostgres,
  type ServiceProcess,
} from '@ccm/testing';
import { createStreams } from '../streams/streams.js';
import { recordPid, RUN_DIR, stopRecorded } from './pids.js';
import { Supervisor } from './supervisor.js';
import { startWatchdog } from './watchdog-process.js';

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
  /**
   * Run each host's agent in this network namespace (a lab host: its VMs' taps, bridge and migration
   * streams are that host's); undefined runs it in this one.
   */
  hostNetns?: (hostId: string) => string | undefined;
  /**
   * NATS and Postgres also listen here and accept clients from these networks (what agents in lab
   * namespaces and guests on their bridges reach); default loopback only.
   */
  listen?: { host: string; clientCidrs: readonly string[] };
  /** Extra settings of each other service (a driver, a VM spec, step clocks). */
  serviceEnv?: (app: ServiceName) => Record<string, string>;
  /** CCM_EVENTS' limits (default: from CCM_EVENTS_* in the environment, else the documented defaults). */
  eventsRetention?: EventsRetention;
  log?: (m: string) => void;
}

export interface LocalStack {
  natsUrl: string;
  databaseUrl: string;
  keysDir: string;
  /** The current process of each service; a restart replaces its entry. */
  services: ServiceProcess[];
  /** Services given up after a crash loop. */
  givenUp: ReadonlySet<string>;
  /** Environment for anything joining this stack (the CLI, an extra service). */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** What the CLI reads to find a running local stack. */
export const STACK_FILE = 'stack.json';

/** Identities the stack makes: every service but host-agent, which gets one identity per host. */
const UNPINNED_SIGNERS = [...SERVICES.filter((s) => s !== 'host-agent'), ...PERSON_SIGNERS, BOOTSTRAP];

/**
 * Brings up CCM on one machine: nats-server with JetStream and per-identity NKEY permissions, the
 * embedded Postgres (or the one given by URL), and every service as its own process; each must
 * report healthy. Services are supervised (see {@link Supervisor}); a watchdog process stops
 * everything if the launcher dies without stopping it, and a start first stops what a crashed run left
 * (recorded in `<state>/launcher-pids/`). Stops everything in reverse order, services first with SIGTERM.
 */
export async function startLocalStack(opts: LocalStackOptions): Promise<LocalStack> {
  const log = opts.log ?? (() => undefined);
  const keysDir = join(opts.stateDir, 'keys');
  const logsDir = join(opts.stateDir, 'logs');
  await mkdir(logsDir, { recursive: true, mode: 0o700 });
  // The embedded Postgres runs as the postgres user when we are root: it must be able to enter the
  // state dir, which therefore stays 0755; what is secret in it is 0700 (dirs) or 0600 (files).
  await chmod(opts.stateDir, 0o755);
  await chmod(logsDir, 0o700);
  const leftovers = await stopRecorded(opts.stateDir);
  if (leftovers.length)
    log(`stopped ${leftovers.length} process(es) a crashed run left running: ${leftovers.join(', ')}`);
  const watchdog = startWatchdog(opts.stateDir);
  const { natsAuthFile } = await generateKeys(keysDir, {
    signers: UNPINNED_SIGNERS,
    hostIds: opts.hosts,
  });
  await chmod(keysDir, 0o700);
  const started = Date.now();
  const [nats, pg] = await Promise.all([
    startNatsServer({
      dir: join(opts.stateDir, 'nats'),
      extraConfig: await readFile(natsAuthFile, 'utf8'),
      ...(opts.listen ? { listenHost: opts.listen.host } : {}),
    }),
    opts.databaseUrl
      ? Promise.resolve(undefined)
      : startPostgres({
          dir: join(opts.stateDir, 'postgres'),
          persistent: true,
          ...(opts.listen ? { listen: opts.listen } : {}),
        }),
  ]);
  await recordPid(opts.stateDir, { name: 'nats-server', pid: nats.pid, stopSignal: 'SIGTERM', server: true });
  if (pg)
    await recordPid(opts.stateDir, { name: 'postgres', pid: pg.pid, stopSignal: 'SIGINT', server: true });
  // Services only check that the streams exist: the bootstrap identity creates them.
  try {
    await createStreams(nats.url, keysDir, opts.eventsRetention ?? eventsRetentionFromEnv(process.env));
  } catch (err) {
    await Promise.allSettled([nats.stop(), pg?.stop()]);
    await rm(join(opts.stateDir, RUN_DIR), { recursive: true, force: true });
    watchdog.release();
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
  const supervisor = new Supervisor(opts.stateDir, log);
  const stopAll = async (n: RunningNats, p?: RunningPostgres) => {
    await supervisor.stop();
    await Promise.allSettled([n.stop(), p?.stop()]);
    await rm(join(opts.stateDir, RUN_DIR), { recursive: true, force: true });
    watchdog.release();
  };
  try {
    const wanted = opts.services ?? SERVICES.filter((s) => s !== 'guest-agent' && s !== 'host-agent');
    await Promise.all(
      wanted.map((app) =>
        supervisor.add({
          name: app,
          app,
          env: { ...env, CCM_INSTANCE_ID: `${app}-1`, ...(opts.serviceEnv?.(app) ?? {}) },
          logFile: join(logsDir, `${app}.log`),
        }),
      ),
    );
    for (const host of opts.hosts ?? []) {
      const netns = opts.hostNetns?.(host);
      await supervisor.add({
        ...(netns ? { netns } : {}),
        name: `host-agent-${host}`,
        app: 'host-agent',
        env: {
          ...env,
          CCM_HOST_ID: host,
          CCM_INSTANCE_ID: `host-agent-${host}`,
          ...(opts.hostEnv?.(host) ?? {}),
        },
        logFile: join(logsDir, `host-agent-${host}.log`),
      });
    }
    log(`${supervisor.services.length} services ready after ${Date.now() - started} ms`);
  } catch (err) {
    await stopAll(nats, pg);
    throw err;
  }
  // It holds the Postgres superuser's password.
  const stackFile = join(opts.stateDir, STACK_FILE);
  await writeFile(
    stackFile,
    `${JSON.stringify({ natsUrl: nats.url, keysDir, databaseUrl, pid: process.pid }, null, 2)}\n`,
    { mode: 0o600 },
  );
  await chmod(stackFile, 0o600);
  return {
    natsUrl: nats.url,
    databaseUrl,
    keysDir,
    services: supervisor.services,
    givenUp: supervisor.givenUp,
    env,
    stop: async () => {
      await stopAll(nats, pg);
      await rm(stackFile, { force: true });
    },
  };
}
