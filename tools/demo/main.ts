#!/usr/bin/env node
/**
 * CCM's demo: brings up the embedded stack (nats-server with JetStream, embedded Postgres, every
 * service as a process, a host-agent for each of two hosts), proves each service is wired (signed
 * ping, /health), live-migrates a running VM between the hosts with progress, counts the signed
 * events in the audit stream, then stops everything cleanly.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { OPERATOR, PING_VERB, PingReplySchema, STREAMS, subjects, type ServiceName } from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { connectNats, signedRequest } from '@ccm/messaging';
import { jetstreamManager } from '@nats-io/jetstream';
import { startLocalStack } from '../stack/stack.js';
import { demoVmMigration } from './vm-migration.js';

const { values } = parseArgs({
  options: { keep: { type: 'boolean' }, state: { type: 'string' } },
  strict: true,
});
const say = (m: string) => process.stdout.write(`${m}\n`);
const t0 = Date.now();
const since = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;

const stateDir = values.state ?? (await mkdtemp(join(tmpdir(), 'ccm-demo-')));
say(`CCM demo — state in ${stateDir}`);
const stack = await startLocalStack({
  stateDir,
  hosts: ['host-a', 'host-b'],
  log: (m) => say(`  [${since()}] ${m}`),
});
let failed = false;
try {
  const [identity, trust] = await Promise.all([
    loadIdentity(stack.keysDir, OPERATOR),
    loadTrustStore(stack.keysDir),
  ]);
  const nc = await connectNats([stack.natsUrl], identity, 'ccm-demo');
  say(`\n1. every service answers a signed ping (reply signature verified against the trust store)`);
  for (const p of stack.services) {
    const app = p.app as ServiceName;
    const host = p.env['CCM_HOST_ID'];
    const subject = host ? subjects.hostCmd(host, PING_VERB) : subjects.cmd(app, PING_VERB);
    const started = performance.now();
    const r = await signedRequest(nc, identity, trust, subject, { message: 'demo' }, PingReplySchema, {
      timeoutMs: 10_000,
    });
    const health = (await (await fetch(`http://127.0.0.1:${p.httpPort}/health`)).json()) as {
      status: string;
    };
    say(
      `   ${`${r.service}${host ? `@${host}` : ''}`.padEnd(24)} ${(performance.now() - started).toFixed(1).padStart(6)} ms  health=${health.status}`,
    );
  }
  say(`\n2. live migration of a running VM from host-a to host-b through the two host-agents`);
  await demoVmMigration({ nc, identity, trust, say }, 'host-a', 'host-b');
  const jsm = await jetstreamManager(nc);
  const events = await jsm.streams.info(STREAMS.events.name);
  say(`\n3. the audit stream ${STREAMS.events.name} holds ${events.state.messages} signed events`);
  await nc.close();
} catch (err) {
  failed = true;
  say(`demo failed: ${(err as Error).message}`);
} finally {
  say(`\n4. stopping: services drain on SIGTERM, then NATS and Postgres`);
  await stack.stop();
  if (!values.keep && !values.state) await rm(stateDir, { recursive: true, force: true });
  say(`done in ${since()}`);
}
process.exitCode = failed ? 1 : 0;
