import { BOOTSTRAP, inboxPrefix, type EventsRetention } from '@ccm/contracts';
import { loadIdentity } from '@ccm/keys';
import { ensureStreams } from '@ccm/messaging';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, nkeyAuthenticator } from '@nats-io/transport-node';

/**
 * Creates (or brings up to date) CCM's JetStream streams as the bootstrap identity, the only one the
 * server lets create or change a stream; services merely check that the streams exist. `retention`
 * sets CCM_EVENTS' limits (read from the environment by `eventsRetentionFromEnv`).
 */
export async function createStreams(
  natsUrl: string,
  keysDir: string,
  retention?: EventsRetention,
): Promise<void> {
  const boot = await loadIdentity(keysDir, BOOTSTRAP);
  const nc = await connect({
    servers: natsUrl,
    authenticator: nkeyAuthenticator(boot.natsSeed),
    inboxPrefix: inboxPrefix(BOOTSTRAP),
  });
  await ensureStreams(await jetstreamManager(nc), retention).finally(() => nc.close());
}
