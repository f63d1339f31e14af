#!/usr/bin/env node
/**
 * CCM's demo: brings up the embedded stack (nats-server with JetStream, embedded Postgres, every
 * service as a process, a host-agent for each of two hosts), proves each service is wired (signed
 * ping, /health), then live-migrates a running container between two confidential VMs with
 * `ccm migrate --follow` (container-migration.ts), counts the signed events in the audit stream, and
 * stops everything cleanly.
 *
 * Where the machine can run QEMU (root, network namespaces, the container guest image), the VMs are
 * real: QEMU (TCG where KVM cannot run) on the software secure processor, two hosts as network
 * namespaces, runc and CRIU inside the guests (qemu-container.ts). Elsewhere, or with `--sim`, the
 * same flow runs on the sim drivers, and the demo says why. `demo vm` live-migrates a running QEMU VM
 * through the saga-coordinator instead, with `ccm migrate <vm> --kind vm --follow`, its two hosts as
 * network namespaces as in the VM saga's e2e (vm-migration.ts); it needs QEMU and namespaces (root).
 *
 * Whatever happens — a failed step, Ctrl-C, SIGTERM — it stops everything it started (services, NATS,
 * Postgres and the VMs' QEMUs, which host-agents leave running when they stop, and the lab's
 * namespaces) and exits non-zero with one line saying why. `demo vm --fail-destination` kills host-b's
 * QEMU before the migration starts: the demo must then fail that way (the test of the failure path
 * uses it): the saga rolls back and the VM keeps running at host-a until the demo ends it.
 */
import { type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { OPERATOR, PING_VERB, PingReplySchema, STREAMS, subjects } from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { connectNats, signedRequest } from '@ccm/messaging';
import { jetstreamManager } from '@nats-io/jetstream';
import { type NatsConnection } from '@nats-io/transport-node';
import { killVmProcesses } from '@ccm/qmp';
import { onStopSignals } from '../run/stop-signals.js';
import { startLocalStack, type LocalStack } from '../stack/stack.js';
import { demoContainerMigration, simContainerSetup, stopSimGuests } from './container-migration.js';
import { qemuContainerSetup, qemuContainerUnavailable, type QemuContainerSetup } from './qemu-container.js';
import { demoVmMigration, qemuVmSetup, qemuVmUnavailable, type QemuVmSetup } from './vm-migration.js';

const USAGE = 'usage: demo [vm|container] [--sim] [--state DIR] [--keep] [--fail-destination]';
let values: { keep?: boolean; state?: string; 'fail-destination'?: boolean; sim?: boolean };
let mode: 'vm' | 'container' = 'container';
try {
  let positionals: string[];
  ({ values, positionals } = parseArgs({
    options: {
      keep: { type: 'boolean' },
      state: { type: 'string' },
      'fail-destination': { type: 'boolean' },
      sim: { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  }));
  const [m, ...rest] = positionals;
  if (rest.length || (m !== undefined && m !== 'vm' && m !== 'container'))
    throw new Error(`unknown mode ${positionals.join(' ')}`);
  if (m === 'vm') mode = 'vm';
  if (mode === 'container' && values['fail-destination'])
    throw new Error('--fail-destination is for the VM demo (demo vm --fail-destination)');
  if (mode === 'vm' && values.sim) throw new Error('--sim is for the container demo');
} catch (err) {
  process.stderr.write(`ccm demo: ${(err as Error).message}\n${USAGE}\n`);
  process.exit(2);
}
const say = (m: string) => process.stdout.write(`${m}\n`);
const t0 = Date.now();
const since = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;

const stateDir = values.state ?? (await mkdtemp(join(tmpdir(), 'ccm-demo-')));
/** The host-agents' runtime dirs (a VM's QMP socket, pid, serial log): inside the state dir. */
const runRoot = join(stateDir, 'run');
let stack: LocalStack | undefined;
let nc: NatsConnection | undefined;
/** The container demo on real guests: the lab hosts' namespaces and the guests' image. */
let qemu: QemuContainerSetup | undefined;
/** The VM demo: the hosts' namespaces and the lab that endorses them. */
let vm: QemuVmSetup | undefined;
/** The `ccm` processes the container demo runs. */
const children = new Set<ChildProcess>();

/** Stops everything this demo started; safe to call twice and from a signal. */
let stopped: Promise<void> | undefined;
const stopEverything = (): Promise<void> =>
  (stopped ??= (async () => {
    for (const c of children) c.kill('SIGTERM');
    await nc?.close().catch(() => undefined);
    try {
      await stack?.stop();
    } finally {
      // Host-agents leave their VMs running when they stop (VMs outlive their agent): end them, and
      // on the sim drivers the guest-agent each sim VM runs.
      const vms =
        mode === 'container' && !qemu ? await stopSimGuests(runRoot) : await killVmProcesses(runRoot);
      if (vms.length) say(`   ended ${vms.length} VM process(es) the host-agents left: ${vms.join(', ')}`);
      qemu?.close();
      vm?.close();
    }
    if (!values.keep && !values.state) await rm(stateDir, { recursive: true, force: true });
  })());
const signals = onStopSignals('ccm demo', stopEverything);

let failure: string | undefined;
try {
  say(`CCM demo (${mode}) — state in ${stateDir}`);
  const noQemu =
    mode === 'container' ? (values.sim ? 'asked for --sim' : qemuContainerUnavailable()) : undefined;
  if (mode === 'container' && !noQemu) {
    say(
      `This runs on real guests: QEMU (TCG) confidential VMs on the software secure processor, runc and CRIU inside them, two hosts as network namespaces; the workload overlay on kernel WireGuard inside the guests, and a TCP client outside both talking to the container over it.`,
    );
    qemu = await qemuContainerSetup(join(stateDir, 'qemu-container'), runRoot, join(stateDir, 'keys'), (m) =>
      say(`  [${since()}] ${m}`),
    );
  }
  const sim =
    mode === 'container' && !qemu
      ? await simContainerSetup(join(stateDir, 'sim-container'), runRoot)
      : undefined;
  if (sim)
    say(
      `This runs on the sim drivers (${noQemu ?? ''}): simulated hypervisor, software secure processor (emulated SEV-SNP), guest-agents as processes, the overlay's sim driver.`,
    );
  if (mode === 'vm') {
    const why = qemuVmUnavailable();
    if (why) throw new Error(`the VM demo needs QEMU hosts in network namespaces: ${why}`);
    say(`This runs QEMU (TCG) guests on two hosts as network namespaces, through the saga-coordinator.`);
    vm = await qemuVmSetup(join(stateDir, 'qemu-vm'), runRoot);
  }
  const flow = qemu ?? sim;
  const net = qemu ?? vm;
  stack = await startLocalStack({
    stateDir,
    hosts: ['host-a', 'host-b'],
    hostEnv: (flow ?? vm!).hostEnv,
    ...(flow ? { serviceEnv: flow.serviceEnv } : {}),
    ...(net ? { listen: net.listen, hostNetns: net.hostNetns } : {}),
    log: (m) => say(`  [${since()}] ${m}`),
  });
  await qemu?.writeAppDisk(stack);
  const [identity, trust] = await Promise.all([
    loadIdentity(stack.keysDir, OPERATOR),
    loadTrustStore(stack.keysDir),
  ]);
  nc = await connectNats([stack.natsUrl], identity, 'ccm-demo');
  say(`\n1. every service answers a signed ping (reply signature verified against the trust store)`);
  for (const p of stack.services) {
    const app = p.app;
    const host = p.env['CCM_HOST_ID'];
    const subject = host ? subjects.hostCmd(host, PING_VERB) : subjects.cmd(app, PING_VERB);
    const started = performance.now();
    const r = await signedRequest(nc, identity, trust, subject, { message: 'demo' }, PingReplySchema, {
      timeoutMs: 10_000,
    });
    const health = (await (await fetch(`${p.httpUrl}/health`)).json()) as { status: string };
    say(
      `   ${`${r.service}${host ? `@${host}` : ''}`.padEnd(24)} ${(performance.now() - started).toFixed(1).padStart(6)} ms  health=${health.status}`,
    );
  }
  if (flow) {
    say(
      `\n2. live migration of a running container between two confidential VMs, host-a to host-b (${qemu ? 'QEMU guests, runc and CRIU' : 'sim drivers'})`,
    );
    await demoContainerMigration({ stack, setup: flow, say, children, real: qemu !== undefined });
  } else {
    say(`\n2. live migration of a running QEMU VM from host-a to host-b through the saga-coordinator`);
    await demoVmMigration({
      stack,
      setup: vm!,
      say,
      children,
      failDestination: values['fail-destination'] ?? false,
    });
  }
  const jsm = await jetstreamManager(nc);
  const events = await jsm.streams.info(STREAMS.events.name);
  say(`\n3. the audit stream ${STREAMS.events.name} holds ${events.state.messages} signed events`);
} catch (err) {
  failure = (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, ' ');
} finally {
  say(`\n4. stopping: services drain on SIGTERM, then NATS and Postgres; VMs left are ended`);
  await stopEverything().catch((err: unknown) => {
    failure ??= `stopping failed: ${String(err)}`;
  });
  say(`done in ${since()}`);
}
const signalled = signals.exitCode();
signals.dispose();
// After a signal its line said why; what failed then is only the consequence of stopping.
if (failure && !signalled) process.stderr.write(`ccm demo failed: ${failure}\n`);
// Exit now: nothing the demo started is left, and no stray handle may keep it alive.
process.exit(signalled ?? (failure ? 1 : 0));
