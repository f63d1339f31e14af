import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { HOST_COMMANDS, subjects, type HostVerb } from '@ccm/contracts';
import { loadTrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { PollAbortError, pollUntil, type TestStack } from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { type z } from 'zod';

/** The built host-agent (dist/, which the test run's global setup compiles). */
const ENTRY = resolve(import.meta.dirname, '../../../../dist/apps/host-agent/src/main.js');

/**
 * Real host-agent processes for coordinator specs: each its own process from dist/ with its own host
 * identity, run dir and log (`<runRoot>/<host>.agent.log`), driven by the operator over NATS. The
 * coordinator's saga reaches them exactly as in production; nothing here answers for them.
 */
export interface HostAgents {
  readonly runRoot: string;
  /** The operator's command to a host (`ccm.cmd.host.<host>.<verb>`), typed by HOST_COMMANDS. */
  send<V extends HostVerb>(
    host: string,
    verb: V,
    payload: z.input<(typeof HOST_COMMANDS)[V]['request']>,
  ): Promise<z.infer<(typeof HOST_COMMANDS)[V]['reply']>>;
  stop(): Promise<void>;
}

export async function startHostAgents(
  stack: TestStack,
  hostIds: readonly string[],
  env: Record<string, string>,
): Promise<HostAgents> {
  const runRoot = await mkdtemp(join(tmpdir(), 'ccm-saga-hosts-'));
  const nc: NatsConnection = await stack.connectAs('operator');
  const identity = await stack.identity('operator');
  const trust = await loadTrustStore(stack.keysDir);
  const children: ChildProcess[] = [];
  const send: HostAgents['send'] = (host, verb, payload) =>
    signedRequest(nc, identity, trust, subjects.hostCmd(host, verb), payload, HOST_COMMANDS[verb].reply, {
      timeoutMs: 20_000,
      idempotencyKey: randomUUID(),
    }) as never;
  const stop = async (): Promise<void> => {
    await Promise.all(
      children.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const gone = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await gone;
      }),
    );
    await killVmProcesses(runRoot);
    await nc.close().catch(() => undefined);
    await rm(runRoot, { recursive: true, force: true });
  };
  try {
    for (const host of hostIds) {
      const log = openSync(join(runRoot, `${host}.agent.log`), 'a');
      const child = spawn(process.execPath, [ENTRY], {
        env: {
          ...process.env,
          ...stack.env({
            CCM_HOST_ID: host,
            CCM_INSTANCE_ID: `${host}-process`,
            CCM_RUN_DIR: join(runRoot, host),
            ...env,
          }),
        },
        stdio: ['ignore', log, log],
      });
      closeSync(log);
      children.push(child);
      await pollUntil(
        `host-agent ${host} to answer`,
        () => {
          if (child.exitCode !== null) throw new PollAbortError(`host-agent ${host} exited: see ${runRoot}`);
          return send(host, 'platform', {}).catch(() => undefined);
        },
        Boolean,
        { timeoutMs: 60_000, intervalMs: 200 },
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { runRoot, send, stop };
}

/** Agents leave VMs running by design: kill every VM process left under `runRoot`. */
async function killVmProcesses(runRoot: string): Promise<void> {
  for (const host of await readdir(runRoot).catch(() => [])) {
    for (const vm of await readdir(join(runRoot, host, 'vms')).catch(() => [])) {
      const dir = join(runRoot, host, 'vms', vm);
      const pid = Number.parseInt(await readFile(join(dir, 'vm.pid'), 'utf8').catch(() => ''), 10);
      // only a process started for this run dir (a pid may have been recycled)
      const cmdline = pid > 0 ? await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '') : '';
      if (cmdline.includes(dir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    }
  }
}
