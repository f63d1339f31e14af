import { randomUUID } from 'node:crypto';
import {
  HOST_COMMANDS,
  hostCommandSubject,
  TRANSFER_EVENTS,
  transferEventSubject,
  type HostVerb,
} from '@ccm/contracts';
import { loadIdentity, loadTrustStore, type TrustStore } from '@ccm/keys';
import { openEnvelope, signedRequest } from '@ccm/messaging';
import { type TestStack } from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { type z } from 'zod';

type Reply<V extends HostVerb> = z.infer<(typeof HOST_COMMANDS)[V]['reply']>;
type CompletedFigures = z.infer<(typeof TRANSFER_EVENTS)['completed']>['figures'];

/** The operator's side of the host-agent commands, as the benchmarks drive them. */
export interface AgentClient {
  nc: NatsConnection;
  trust: TrustStore;
  send<V extends HostVerb>(
    host: string,
    verb: V,
    data: z.input<(typeof HOST_COMMANDS)[V]['request']>,
  ): Promise<Reply<V>>;
  /**
   * Starts migration `migrationId` on `host` and resolves with QEMU's figures from the agent's signed
   * `completed` event (rejects with the reason of a `failed` or `cancelled` one, or after `timeoutMs`).
   */
  migrate(
    host: string,
    req: z.input<(typeof HOST_COMMANDS)['start-migration']['request']>,
    timeoutMs: number,
  ): Promise<{ figures: CompletedFigures; wallMs: number }>;
  close(): Promise<void>;
}

/** Connects as the operator identity of `stack` and signs every command with a fresh idempotency key. */
export async function agentClient(stack: TestStack): Promise<AgentClient> {
  const nc = await stack.connectAs('operator');
  const [identity, trust] = await Promise.all([
    loadIdentity(stack.keysDir, 'operator'),
    loadTrustStore(stack.keysDir),
  ]);
  const send: AgentClient['send'] = (host, verb, data) =>
    signedRequest(nc, identity, trust, hostCommandSubject(host, verb), data, HOST_COMMANDS[verb].reply, {
      idempotencyKey: randomUUID(),
      timeoutMs: 60_000,
    }) as Promise<Reply<typeof verb>>;
  return {
    nc,
    trust,
    send,
    async migrate(host, req, timeoutMs) {
      const id = req.migrationId;
      const subs = (['completed', 'failed', 'cancelled'] as const).map((what) => ({
        what,
        sub: nc.subscribe(transferEventSubject(id, what), { max: 1 }),
      }));
      let timer: NodeJS.Timeout | undefined;
      try {
        const t0 = Date.now();
        const ended = Promise.race(
          subs.map(async ({ what, sub }) => {
            for await (const m of sub) {
              if (what === 'completed')
                return openEnvelope(m.data, trust, TRANSFER_EVENTS.completed, { subject: m.subject }).data;
              const data = openEnvelope(m.data, trust, TRANSFER_EVENTS[what], { subject: m.subject }).data;
              throw new Error(`migration ${id} ${what}: ${data.reason}`);
            }
            return new Promise<never>(() => undefined);
          }),
        );
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`migration ${id} did not end within ${timeoutMs} ms`)),
            timeoutMs,
          );
        });
        await send(host, 'start-migration', req);
        const done = await Promise.race([ended, timeout]);
        return { figures: done.figures, wallMs: Date.now() - t0 };
      } finally {
        clearTimeout(timer);
        for (const { sub } of subs) sub.unsubscribe();
      }
    },
    close: () => nc.close(),
  };
}
