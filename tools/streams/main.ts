#!/usr/bin/env node
/**
 * ccm-streams: creates CCM's JetStream streams as the bootstrap identity (the compose `streams` job;
 * the stack launcher and the test stack do the same themselves).
 *
 *   CCM_NATS_URL=nats://… CCM_KEYS_DIR=DIR node dist/tools/streams/main.js
 *
 * CCM_KEYS_DIR must hold the bootstrap identity (`bootstrap.nk`, made by ccm-keys). CCM_EVENTS'
 * retention comes from CCM_EVENTS_MAX_AGE_MS, CCM_EVENTS_MAX_BYTES, CCM_EVENTS_MAX_MSGS and
 * CCM_EVENTS_DISCARD (docs/audit.md). Exit 0 when every stream exists with CCM's configuration, 78
 * when the settings are missing or invalid, 69 when NATS refused.
 */
import { ConfigError, eventsRetentionFromEnv } from '@ccm/config';
import { type EventsRetention } from '@ccm/contracts';
import { createStreams } from './streams.js';

const natsUrl = process.env['CCM_NATS_URL'] ?? 'nats://127.0.0.1:4222';
const keysDir = process.env['CCM_KEYS_DIR'];
if (!keysDir) {
  process.stderr.write('ccm-streams: CCM_KEYS_DIR is required (a keys dir with the bootstrap identity)\n');
  process.exit(78);
}
let retention: EventsRetention;
try {
  retention = eventsRetentionFromEnv(process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`ccm-streams: ${err.message}\n`);
  process.exit(78);
}
try {
  await createStreams(natsUrl, keysDir, retention);
  process.stdout.write(
    `ccm-streams: CCM's streams are in place on ${natsUrl}; CCM_EVENTS keeps ${JSON.stringify(retention)}\n`,
  );
} catch (err) {
  process.stderr.write(`ccm-streams: ${(err as Error).message}\n`);
  process.exit(69);
}
