import { randomUUID } from 'node:crypto';
import { HOST_COMMANDS, hostCommandSubject, type HostVerb } from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { type NatsConnection } from '@nats-io/transport-node';
import { type z } from 'zod';

type Req<V extends HostVerb> = z.input<(typeof HOST_COMMANDS)[V]['request']>;
type Rep<V extends HostVerb> = z.infer<(typeof HOST_COMMANDS)[V]['reply']>;

/** Test helper: host-agent commands as the operator, each with a fresh idempotency key unless given. */
export interface HostClient {
  send<V extends HostVerb>(
    hostId: string,
    verb: V,
    data: Req<V>,
    o?: { key?: string; timeoutMs?: number },
  ): Promise<Rep<V>>;
}

export async function hostClient(nc: NatsConnection, keysDir: string): Promise<HostClient> {
  const [identity, trust] = await Promise.all([loadIdentity(keysDir, 'operator'), loadTrustStore(keysDir)]);
  return {
    send: (hostId, verb, data, o = {}) =>
      signedRequest(nc, identity, trust, hostCommandSubject(hostId, verb), data, HOST_COMMANDS[verb].reply, {
        idempotencyKey: o.key ?? `${verb}-${randomUUID()}`,
        timeoutMs: o.timeoutMs ?? 30_000,
      }) as Promise<Rep<typeof verb>>,
  };
}
