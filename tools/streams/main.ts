#!/usr/bin/env node
/**
 * ccm-streams: creates CCM's JetStream streams as the bootstrap identity (the compose `streams` job;
 * the stack launcher and the test stack do the same themselves).
 *
 *   CCM_NATS_URL=nats://… CCM_KEYS_DIR=DIR node dist/tools/streams/main.js
 *
 * CCM_KEYS_DIR must hold the bootstrap identity (`bootstrap.nk`, made by ccm-keys). Exit 0 when every
 * stream exists with CCM's configuration, 78 when the settings are missing, 69 when NATS refused.
 */
import { createStreams } from './streams.js';

const natsUrl = process.env['CCM_NATS_URL'] ?? 'nats://127.0.0.1:4222';
const keysDir = process.env['CCM_KEYS_DIR'];
if (!keysDir) {
  process.stderr.write('ccm-streams: CCM_KEYS_DIR is required (a keys dir with the bootstrap identity)\n');
  process.exit(78);
}
try {
  await createStreams(natsUrl, keysDir);
  process.stdout.write(`ccm-streams: CCM's streams are in place on ${natsUrl}\n`);
} catch (err) {
  process.stderr.write(`ccm-streams: ${(err as Error).message}\n`);
  process.exit(69);
}
