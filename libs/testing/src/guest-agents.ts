import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { type SignerName, subjects } from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { pollUntil } from './poll.js';
import { type TestStack } from './stack.js';
import { reapWithParent } from './reaper.js';
import { REPO_ROOT } from './service-process.js';

// From the repository root: the same from the sources (tests) and from dist/ (the demo).
const entry = join(REPO_ROOT, 'dist/apps/guest-agent/src/main.js');

/** A guest-agent (sim driver) as its own process (from dist/, built by the test run's global setup). */
export interface GuestProcess {
  readonly vmId: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

export async function startGuest(
  stack: Pick<TestStack, 'env'>,
  vmId: string,
  send: GuestClient['send'],
  extra: Record<string, string> = {},
  opts: { netns?: string } = {},
): Promise<GuestProcess> {
  // In a network namespace (`ip netns exec` execs node, so `child.pid` is node's) the stack must
  // listen on an address that namespace reaches.
  const [command, ...args] = opts.netns
    ? ['ip', 'netns', 'exec', opts.netns, process.execPath, entry]
    : [process.execPath, entry];
  const child = spawn(command, args, {
    env: { ...process.env, ...stack.env({ CCM_VM_ID: vmId, CCM_INSTANCE_ID: `guest-${vmId}`, ...extra }) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  reapWithParent(child, { group: false });
  // A loaded machine may take a while to boot a Nest process: wait up to a minute.
  await pollUntil(
    `guest-agent ${vmId} answers`,
    () => send(vmId, 'identity', {}, { timeoutMs: 1000 }).then(() => true),
    Boolean,
    { timeoutMs: 60_000 },
  );
  return {
    vmId,
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 5000).unref())]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

export interface GuestClient {
  send(
    vmId: string,
    verb: string,
    data: unknown,
    o?: { timeoutMs?: number },
  ): Promise<Record<string, unknown>>;
}

/** Guest-agent commands signed as `signer` (the operator, or an identity playing an attacker). */
export async function guestClient(
  nc: NatsConnection,
  keysDir: string,
  signer: SignerName = 'operator',
): Promise<GuestClient> {
  const [identity, trust] = await Promise.all([loadIdentity(keysDir, signer), loadTrustStore(keysDir)]);
  return {
    send: (vmId, verb, data, o = {}) =>
      signedRequest(
        nc,
        identity,
        trust,
        subjects.guestCmd(vmId, verb),
        data,
        z.record(z.string(), z.unknown()),
        {
          idempotencyKey: `${verb}-${randomUUID()}`,
          timeoutMs: o.timeoutMs ?? 30_000,
        },
      ),
  };
}
