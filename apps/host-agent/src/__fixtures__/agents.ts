import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type INestApplication } from '@nestjs/common';
import { createServiceApp } from '@ccm/runtime';
import { pollUntil, startTestStack, type TestStack } from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { hostAgent } from '../app.js';
import { isVmProcess } from '../drivers/vm-process.js';
import { hostClient, type HostClient } from './host-client.js';

/** The heartbeats of the serial console (`COUNTER n`), in order. */
export async function counters(serialLog: string): Promise<number[]> {
  const text = await readFile(serialLog, 'utf8').catch(() => '');
  return [...text.matchAll(/^COUNTER (\d+)\b/gm)].map((m) => Number(m[1]));
}

export const lastOf = (xs: number[]): number => xs[xs.length - 1] ?? 0;

/** Waits until the console shows counter `n` or more. */
export function counterReaches(serialLog: string, n: number, timeoutMs = 20_000): Promise<number[]> {
  return pollUntil(
    `${serialLog} to reach COUNTER ${n}`,
    () => counters(serialLog),
    (c) => lastOf(c) >= n,
    {
      timeoutMs,
      intervalMs: 50,
    },
  );
}

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

/** Kills every VM process left under `runRoot` (`<host>/vms/<vm>/vm.pid`): agents leave VMs running. */
export async function killVmProcesses(runRoot: string): Promise<void> {
  for (const host of await readdir(runRoot).catch(() => [])) {
    for (const vm of await readdir(join(runRoot, host, 'vms')).catch(() => [])) {
      const dir = join(runRoot, host, 'vms', vm);
      const pid = Number.parseInt(await readFile(join(dir, 'vm.pid'), 'utf8').catch(() => ''), 10);
      if (pid > 0 && (await isVmProcess(pid, dir))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    }
  }
}
