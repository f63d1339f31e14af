/**
 * Test helper process: runs one outbox relay pass and kills itself with SIGKILL right after the first
 * event is published to JetStream and before the row is marked sent — a real crash at the worst point.
 * argv: <natsUrl> <keysDir> <databaseUrl> <schema>
 */
import { loadIdentity } from '@ccm/keys';
import { connectNats, OutboxRelay } from '@ccm/messaging';
import { openDataSource } from '@ccm/persistence';
import { jetstream } from '@nats-io/jetstream';

const [natsUrl, keysDir, databaseUrl, schema] = process.argv.slice(2) as [string, string, string, string];
const identity = await loadIdentity(keysDir, 'saga-coordinator');
const nc = await connectNats([natsUrl], identity, 'relay-crash');
const ds = await openDataSource({ url: databaseUrl, schema });
const relay = new OutboxRelay(ds, jetstream(nc), schema, {
  pollMs: 50,
  afterPublish: async () => {
    await nc.flush();
    process.kill(process.pid, 'SIGKILL');
  },
});
await relay.relayOnce();
process.stderr.write('relay pass finished without being killed\n');
process.exit(3);
