import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type INestApplication } from '@nestjs/common';
import { createServiceApp } from '@ccm/runtime';
import { killVmProcesses } from '@ccm/qmp';
import {
  hostClient,
  PollAbortError,
  pollUntil,
  startTestStack,
  type HostClient,
  type TestStack,
} from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { hostAgent } from '../app.js';

export { counterReaches, counters, lastOf } from '@ccm/testing';

/** Host-agents running in this test process against one throw-away stack. */
export interface InProcessHosts {
  stack: TestStack;
  nc: NatsConnection;
  client: HostClient;
  runRoot: string;
  apps: Map<string, INestApplication>;
  start(hostId: string, env?: Record<string, string>): Promise<INestApplication>;
  stop(hostId: string): Promise<void>;
  close(): Promise<void>;
}

export async function inProcessHosts(
  hostIds: string[],
  common: Record<string, string>,
): Promise<InProcessHosts> {
  const stack = await startTestStack({ hostIds });
  const runRoot = await mkdtemp(join(tmpdir(), 'ccm-ha-'));
  const nc = await stack.connectAs('operator');
  const client = await hostClient(nc, stack.keysDir);
  const apps = new Map<string, INestApplication>();
  const hosts: InProcessHosts = {
    stack,
    nc,
    client,
    runRoot,
    apps,
    async start(hostId, env = {}) {
      const { app } = await createServiceApp(
        hostAgent,
        stack.env({
          CCM_HOST_ID: hostId,
          CCM_INSTANCE_ID: `${hostId}-test`,
          CCM_RUN_DIR: join(runRoot, hostId),
          ...common,
          ...env,
        }),
      );
      await app.init();
      apps.set(hostId, app);
      return app;
    },
    async stop(hostId) {
      await apps.get(hostId)?.close();
      apps.delete(hostId);
    },
    async close() {
      for (const id of [...apps.keys()]) await hosts.stop(id);
      await killVmProcesses(runRoot);
      await nc.close().catch(() => undefined);
      await stack.stop();
      await rm(runRoot, { recursive: true, force: true });
    },
  };
  return hosts;
}

/** In-process host-agents `hostIds` on the simulated hypervisor (no SEV, fast polls), all started. */
export async function startSimHosts(hostIds: string[]): Promise<InProcessHosts> {
  const h = await inProcessHosts(hostIds, {
    CCM_HYPERVISOR: 'sim',
    CCM_SEV: 'off',
    CCM_MIGRATION_POLL_MS: '50',
    CCM_PROGRESS_INTERVAL_MS: '100',
  });
  try {
    await Promise.all(hostIds.map((id) => h.start(id)));
  } catch (err) {
    await h.close();
    throw err;
  }
  return h;
}

/** The stand-in QEMU: how it behaves is CCM_FAKE_QEMU_MODE when a VM is launched (see fake-qemu.mjs). */
export const FAKE_QEMU = join(import.meta.dirname, 'fake-qemu.mjs');

/**
 * An in-process host-agent `hostId` whose QEMU is {@link FAKE_QEMU} (no SEV), started; `env` adds to
 * its environment. `close()` also forgets the stand-in's mode.
 */
export async function startFakeQemuHost(
  hostId: string,
  env: Record<string, string> = {},
): Promise<InProcessHosts> {
  const h = await inProcessHosts([hostId], {
    CCM_HYPERVISOR: 'qemu',
    CCM_QEMU_BIN: FAKE_QEMU,
    CCM_QEMU_ACCEL: 'tcg',
    CCM_SEV: 'off',
    CCM_VM_START_TIMEOUT_MS: '5000',
    ...env,
  });
  const close = async (): Promise<void> => {
    delete process.env['CCM_FAKE_QEMU_MODE'];
    await h.close();
  };
  try {
    await h.start(hostId);
  } catch (err) {
    await close();
    throw err;
  }
  return { ...h, close };
}

/** A host-agent running as its own process, which a test can kill like a crash. */
export interface AgentProcess {
  readonly pid: number;
  /** SIGKILL, then waits until it is gone. */
  kill(): Promise<void>;
}

/**
 * Starts `hostId` of `hosts` as its own process from the built agent (dist/, which the test run's
 * global setup compiles), with the same environment {@link InProcessHosts.start} would give it, and
 * waits until it answers `platform`. Its output goes to `<runRoot>/<hostId>.agent.log`.
 */
export async function startAgentProcess(
  hosts: InProcessHosts,
  hostId: string,
  common: Record<string, string>,
): Promise<AgentProcess> {
  const entry = resolve(
    import.meta.dirname,
    '..',
    '..',
    '..',
    '..',
    'dist',
    'apps',
    'host-agent',
    'src',
    'main.js',
  );
  const env = hosts.stack.env({
    CCM_HOST_ID: hostId,
    CCM_INSTANCE_ID: `${hostId}-process`,
    CCM_RUN_DIR: join(hosts.runRoot, hostId),
    ...common,
  });
  const log = openSync(join(hosts.runRoot, `${hostId}.agent.log`), 'a');
  const child = spawn(process.execPath, [entry], {
    env: { ...process.env, ...env },
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let gone = false;
  void exited.then(() => (gone = true));
  const kill = async (): Promise<void> => {
    if (!gone) child.kill('SIGKILL');
    await exited;
  };
  await pollUntil(
    `host-agent ${hostId} (pid ${child.pid}) to answer`,
    () => {
      if (gone)
        throw new PollAbortError(`host-agent ${hostId} exited before it answered: see ${hosts.runRoot}`);
      return hosts.client.send(hostId, 'platform', {}, { timeoutMs: 1_000 }).catch(() => undefined);
    },
    Boolean,
    { timeoutMs: 60_000, intervalMs: 200 },
  ).catch(async (err: unknown) => {
    await kill();
    throw err;
  });
  return { pid: child.pid!, kill };
}
