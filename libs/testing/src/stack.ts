import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BOOTSTRAP,
  inboxPrefix,
  PERSON_SIGNERS,
  SERVICES,
  type DurableConsumerContract,
  type EventsRetention,
  type IdentityName,
  type ServiceName,
} from '@ccm/contracts';
import { generateKeys, loadIdentity, type Identity } from '@ccm/keys';
import { createUser } from '@nats-io/nkeys';
import { ensureStreams } from '@ccm/messaging';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type RunningNats } from './nats-server.js';
import { startPostgres, type RunningPostgres } from './postgres.js';

export interface TestStack {
  nats: RunningNats;
  postgres: RunningPostgres;
  keysDir: string;
  /** The environment a service process or `createServiceApp` needs to join this stack. */
  env(extra?: Record<string, string>): Record<string, string>;
  /** An identity's keys; `scope` picks a host-agent pinned to that host (made with `hostIds`). */
  identity(signer: IdentityName, scope?: string): Promise<Identity>;
  /** A raw NATS connection as one identity (its NKEY user and inbox prefix), for probing permissions. */
  connectAs(signer: IdentityName, scope?: string): Promise<NatsConnection>;
  /**
   * A NATS connection that may subscribe to `>` and publish nothing (only with `busSpy`): a test's
   * wiretap, to prove what never crosses the bus. No CCM identity has this right.
   */
  connectSpy(): Promise<NatsConnection>;
  stop(): Promise<void>;
}

/**
 * A throw-away CCM stack for one test suite: keys for every identity, a nats-server with JetStream
 * that enforces the per-identity NKEY permissions, CCM's streams (made by the bootstrap identity, as
 * services only check them), and a Postgres; all on free ports in temp dirs. Host-agents get only
 * pinned identities (`host-agent@<id>`, one per `hostIds` entry), as ccm-keys makes them.
 */
export async function startTestStack(
  opts: {
    /** A host-agent identity pinned to each of these hosts. */
    hostIds?: string[];
    /**
     * Also the unpinned host-agent identity, which may take every host's commands: only for scripted
     * participants that play every host at once (apps/saga-coordinator testing). No real host-agent
     * uses it, and ccm-keys never makes it.
     */
    scriptedHosts?: boolean;
    postgres?: boolean;
    /** Serve NATS and Postgres on this address to these client networks (see `startPostgres`). */
    listen?: { host: string; clientCidrs: readonly string[] };
    /** Durable consumers granted beyond libs/contracts' (test probes and fakes). */
    extraConsumers?: Partial<Record<ServiceName, readonly DurableConsumerContract[]>>;
    /** CCM_EVENTS' limits (default: libs/contracts' DEFAULT_EVENTS_RETENTION). */
    eventsRetention?: EventsRetention;
    /** Add a NATS user that may subscribe to everything (see `connectSpy`). */
    busSpy?: boolean;
    /**
     * How soon nats-server drops a client that stopped answering its pings (`ping_interval` seconds
     * × `ping_max`; nats-server's defaults are 2 min × 2): tests that kill a VM whose agent was
     * connected (a dead guest sends no reset) shorten it.
     */
    natsPing?: { intervalS: number; max: number };
  } = {},
): Promise<TestStack> {
  const keysDir = await mkdtemp(join(tmpdir(), 'ccm-keys-'));
  const { natsAuthFile } = await generateKeys(keysDir, {
    signers: [
      ...SERVICES.filter((s) => s !== 'host-agent' || opts.scriptedHosts),
      ...PERSON_SIGNERS,
      BOOTSTRAP,
    ],
    hostIds: opts.hostIds,
    extraConsumers: opts.extraConsumers,
  });
  let natsAuth = await readFile(natsAuthFile, 'utf8');
  const spy = opts.busSpy ? createUser() : undefined;
  if (spy) {
    const user = `    { nkey: "${spy.getPublicKey()}", permissions: { publish: { deny: [">"] }, subscribe: { allow: [">"] } } } # bus spy (tests only)\n`;
    natsAuth = natsAuth.replace(/\n {2}\]\n\}\n$/, `\n${user}  ]\n}\n`);
    if (!natsAuth.includes('bus spy')) throw new Error('could not add the bus spy to the NATS users');
  }
  const [nats, postgres] = await Promise.all([
    startNatsServer({
      extraConfig: opts.natsPing
        ? `ping_interval: "${opts.natsPing.intervalS}s"\nping_max: ${opts.natsPing.max}\n${natsAuth}`
        : natsAuth,
      listenHost: opts.listen?.host,
    }),
    opts.postgres === false ? Promise.resolve(undefined) : startPostgres({ listen: opts.listen }),
  ]);
  const conns: NatsConnection[] = [];
  try {
    const bootstrap = await connectIdentity(nats.url, await loadIdentity(keysDir, BOOTSTRAP));
    await ensureStreams(await jetstreamManager(bootstrap), opts.eventsRetention).finally(() =>
      bootstrap.close(),
    );
  } catch (err) {
    await Promise.allSettled([nats.stop(), postgres?.stop()]);
    throw err;
  }
  return {
    nats,
    postgres: postgres as RunningPostgres,
    keysDir,
    env: (extra = {}) => ({
      CCM_NATS_URL: nats.url,
      CCM_KEYS_DIR: keysDir,
      ...(postgres ? { CCM_DATABASE_URL: postgres.url } : {}),
      CCM_HTTP_PORT: '0',
      CCM_LOG_LEVEL: 'warn',
      ...extra,
    }),
    identity: (signer, scope) => loadIdentity(keysDir, signer, scope),
    connectAs: async (signer, scope) => {
      const nc = await connectIdentity(nats.url, await loadIdentity(keysDir, signer, scope));
      conns.push(nc);
      return nc;
    },
    connectSpy: async () => {
      if (!spy) throw new Error('start the stack with busSpy: true to connect a bus spy');
      const nc = await connect({ servers: nats.url, authenticator: nkeyAuthenticator(spy.getSeed()) });
      conns.push(nc);
      return nc;
    },
    stop: async () => {
      await Promise.allSettled(conns.map((c) => c.close()));
      await Promise.allSettled([nats.stop(), postgres?.stop()]);
      await rm(keysDir, { recursive: true, force: true });
    },
  };
}

function connectIdentity(url: string, id: Identity): Promise<NatsConnection> {
  return connect({
    servers: url,
    authenticator: nkeyAuthenticator(id.natsSeed),
    inboxPrefix: inboxPrefix(id.name),
  });
}
