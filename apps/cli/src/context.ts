import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { natsServers } from '@ccm/config';
import { OPERATOR, type IdentityName } from '@ccm/contracts';
import { loadIdentity, loadTrustStore, type Identity, type TrustStore } from '@ccm/keys';
import { connectNats } from '@ccm/messaging';
import { type NatsConnection } from '@nats-io/transport-node';
import { CliError, ExitCode } from './errors.js';

export interface Connection {
  nc: NatsConnection;
  identity: Identity;
  trust: TrustStore;
  close(): Promise<void>;
}

export interface ConnectionFlags {
  natsUrl?: string;
  keysDir?: string;
  stateDir?: string;
  /** The key to speak with: the operator's (default), or the guest owner's for its own commands. */
  as?: IdentityName;
}

/**
 * Where to connect, in order: flags, then CCM_NATS_URL / CCM_KEYS_DIR, then the local stack's
 * `stack.json` in CCM_STATE_DIR (default `.state/stack`).
 */
export function resolveConnection(
  flags: ConnectionFlags,
  env = process.env,
): { servers: string[]; keysDir: string } {
  let url = flags.natsUrl ?? env['CCM_NATS_URL'];
  let keysDir = flags.keysDir ?? env['CCM_KEYS_DIR'];
  if (!url || !keysDir) {
    const stackFile = join(resolve(flags.stateDir ?? env['CCM_STATE_DIR'] ?? '.state/stack'), 'stack.json');
    if (existsSync(stackFile)) {
      const stack = JSON.parse(readFileSync(stackFile, 'utf8')) as { natsUrl?: string; keysDir?: string };
      url ??= stack.natsUrl;
      keysDir ??= stack.keysDir;
    }
  }
  if (!url || !keysDir) {
    throw new CliError(
      ExitCode.Usage,
      'NO_STACK',
      'no NATS URL or keys dir given and no local stack found',
      'pass --nats-url and --keys-dir, or start the stack',
    );
  }
  const servers = natsServers.safeParse(url);
  if (!servers.success)
    throw new CliError(
      ExitCode.Usage,
      'BAD_FLAG',
      `--nats-url ${JSON.stringify(url)} must be nats://host:port`,
    );
  return { servers: servers.data, keysDir };
}

export async function connect(flags: ConnectionFlags): Promise<Connection> {
  const { servers, keysDir } = resolveConnection(flags);
  const [identity, trust] = await Promise.all([
    loadIdentity(keysDir, flags.as ?? OPERATOR),
    loadTrustStore(keysDir),
  ]);
  const nc = await connectNats(servers, identity, 'ccm-cli');
  return { nc, identity, trust, close: () => nc.close() };
}
