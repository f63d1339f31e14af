import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, connect, type Server } from 'node:net';
import { resolve } from 'node:path';
import { type SignerName, subjects } from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { FrameReader } from '@ccm/sealing';
import { pollUntil, type TestStack } from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';

const entry = resolve(import.meta.dirname, '../../../../dist/apps/guest-agent/src/main.js');

/** A guest-agent as its own process (from dist/, built by the test run's global setup). */
export interface GuestProcess {
  readonly vmId: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

export async function startGuest(
  stack: TestStack,
  vmId: string,
  send: GuestClient['send'],
  extra: Record<string, string> = {},
): Promise<GuestProcess> {
  const child = spawn(process.execPath, [entry], {
    env: { ...process.env, ...stack.env({ CCM_VM_ID: vmId, CCM_INSTANCE_ID: `guest-${vmId}`, ...extra }) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await pollUntil(`guest-agent ${vmId} answers`, () =>
    send(vmId, 'identity', {}, { timeoutMs: 1000 }).then(() => true),
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

export type Tamper = 'alter' | 'drop' | 'replay' | 'reorder' | 'cut';

/**
 * The untrusted host/network between two guests: forwards the target's challenge as is and the
 * source's frames with one `tamper` applied at frame `at`.
 */
export async function tamperingProxy(
  to: { host: string; port: number },
  binding: { migrationId: string; round: number },
  tamper: Tamper,
  at: number,
): Promise<{ port: number; server: Server }> {
  const server = createServer((client) => {
    const upstream = connect(to.port, to.host);
    const reader = new FrameReader(binding);
    let n = 0;
    let held: Buffer | undefined;
    upstream.on('data', (d) => client.write(d));
    upstream.on('close', () => client.end());
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('data', (d: Buffer) => {
      for (const f of reader.push(d)) {
        const i = n++;
        if (i !== at && !(tamper === 'reorder' && i === at + 1)) {
          upstream.write(f);
          continue;
        }
        if (tamper === 'alter') {
          const c = Buffer.from(f);
          c[c.length - 20] ^= 0x01;
          upstream.write(c);
        } else if (tamper === 'replay') {
          upstream.write(f);
          upstream.write(f);
        } else if (tamper === 'reorder') {
          if (i === at) held = f;
          else {
            upstream.write(f);
            upstream.write(held!);
          }
        } else if (tamper === 'cut') {
          upstream.destroy();
          client.destroy();
        }
        // drop: nothing
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  return { port: typeof a === 'object' && a ? a.port : 0, server };
}
