#!/usr/bin/env node
/**
 * The local stack launcher: `node dist/tools/stack/main.js [--sim] [--state DIR] [--database-url URL] [--host ID...]`
 * brings up NATS, Postgres, every service and two hosts (host-a, host-b) with the container flow
 * configured, prints where they listen and what `ccm` needs, and runs until Ctrl-C. The flow is the
 * demo's: real QEMU guests on the hosts as network namespaces where the machine can (root, QEMU, the
 * container guest image), else, or with `--sim`, the sim drivers; it says which and why. `--host ID`
 * starts host-agents for those hosts instead, with no container flow.
 * A service that dies is reported and restarted with backoff; one that dies 5 times within 60 s is
 * reported as a crash loop and left down while the rest keep running (the launcher does not exit).
 * SIGTERM/SIGINT stop everything it started (the hosts' VMs and namespaces too); if the launcher itself
 * is killed, its watchdog stops the services, NATS and Postgres.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '@ccm/testing';
import { containerFlow, FLOW_OVERLAY, FLOW_WORKLOAD, type ContainerFlow } from './container-flow.js';
import { startLocalStack, type LocalStack } from './stack.js';

const USAGE = 'usage: stack [--sim] [--state DIR] [--database-url URL] [--host ID ...]';
let values: { state?: string; 'database-url'?: string; host?: string[]; sim?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      state: { type: 'string' },
      'database-url': { type: 'string' },
      host: { type: 'string', multiple: true },
      sim: { type: 'boolean' },
    },
    strict: true,
  }));
  if (values.sim && values.host)
    throw new Error('--sim configures the container flow on host-a and host-b: drop --host');
} catch (err) {
  process.stderr.write(`ccm stack: ${(err as Error).message}\n${USAGE}\n`);
  process.exit(2);
}
const say = (m: string) => process.stdout.write(`[stack] ${m}\n`);
const stateDir = resolve(
  values.state ?? process.env['CCM_STATE_DIR'] ?? resolve(REPO_ROOT, '.state', 'stack'),
);
let flow: ContainerFlow | undefined;
let stack: LocalStack | undefined;
let stopping: Promise<void> | undefined;
const stopAll = (): Promise<void> =>
  (stopping ??= (async () => {
    try {
      await stack?.stop();
    } finally {
      const ended = (await flow?.stop()) ?? [];
      if (ended.length) say(`ended ${ended.length} VM process(es) the host-agents left: ${ended.join(', ')}`);
    }
  })());
let policyFile: string | undefined;
try {
  if (!values.host) flow = await containerFlow(stateDir, values.sim ?? false, say);
  stack = await startLocalStack({
    stateDir,
    databaseUrl: values['database-url'] ?? process.env['CCM_DATABASE_URL'],
    hosts: values.host,
    ...(flow?.stackOptions ?? {}),
    log: say,
  });
  policyFile = (await flow?.ready(stack))?.policyFile;
} catch (err) {
  process.stderr.write(`ccm stack: ${(err as Error).message}\n`);
  await stopAll().catch(() => undefined);
  process.exit(1);
}
for (const s of stack.services) {
  const host = s.env['CCM_HOST_ID'];
  say(`${`${s.app}${host ? `@${host}` : ''}`.padEnd(22)} ${s.httpUrl}/health`);
}
if (flow)
  say(
    `container flow on host-a and host-b: ${flow.kind === 'qemu' ? 'QEMU (TCG) confidential VMs, runc and CRIU inside, the hosts as network namespaces' : 'sim drivers (simulated hypervisor, emulated SEV-SNP, guest-agents as processes)'} (${flow.why}); overlay ${FLOW_OVERLAY.overlayId} ${FLOW_OVERLAY.cidr}; the guest owner's policy for ${FLOW_WORKLOAD}: ${policyFile}`,
  );
say(`CCM_NATS_URL=${stack.natsUrl} CCM_KEYS_DIR=${stack.keysDir}`);
say('running; Ctrl-C stops everything');
const stop = () => {
  say('stopping');
  void stopAll().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`ccm stack: stopping failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
