import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type INestApplication } from '@nestjs/common';
import {
  GUEST_OWNER,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  PolicyVersionSchema,
  type OwnerPolicyInput,
  type SignerName,
} from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { createServiceApp } from '@ccm/runtime';
import { LabAuthority } from '@ccm/sev-emulator';
import { startTestStack, type TestStack } from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { type z } from 'zod';
import { keyBroker } from '../app.js';
import { policy } from './platforms.js';
import { startHostAgent, type HostProcess } from './host-process.js';

/**
 * A key-broker (in this process) on a throw-away stack, with real host-agents (built, as processes:
 * the simulated hypervisor and the software secure processor endorsed by one lab), and signed clients
 * for any identity.
 */
export interface BrokerStack {
  stack: TestStack;
  lab: LabAuthority;
  /** A temp dir of the stack (removed with it), for platforms a test makes. */
  work: string;
  broker: INestApplication;
  hosts: Map<string, HostProcess>;
  /** A signed request as `signer`; a fresh idempotency key unless given. */
  send<S extends z.ZodType>(
    signer: SignerName,
    subject: string,
    data: unknown,
    reply: S,
    key?: string,
  ): Promise<z.infer<S>>;
  /** Every message seen on `ccm.evt.>` (subject and raw text). */
  events: Array<{ subject: string; text: string }>;
  /**
   * Starts a bus spy (the stack's identity allowed to subscribe to `>`; needs `busSpy`): every message
   * from now on, with its raw payload, lands in the returned list.
   */
  spyAll(): Promise<Array<{ subject: string; data: Buffer }>>;
  close(): Promise<void>;
}

export async function startBrokerStack(
  hostIds: string[],
  opts: { busSpy?: boolean } = {},
): Promise<BrokerStack> {
  const stack = await startTestStack({ hostIds, busSpy: opts.busSpy });
  const work = await mkdtemp(join(tmpdir(), 'ccm-kb-'));
  const lab = await LabAuthority.create(join(work, 'lab'), { rsaBits: 2048 });
  const hosts = new Map<string, HostProcess>();
  const conns = new Map<SignerName, NatsConnection>();
  const trust = await loadTrustStore(stack.keysDir);
  const events: BrokerStack['events'] = [];
  let broker: INestApplication | undefined;
  const close = async () => {
    await broker?.close();
    await Promise.allSettled([...hosts.values()].map((h) => h.stop()));
    await stack.stop();
    await rm(work, { recursive: true, force: true });
  };
  try {
    for (const hostId of hostIds) {
      hosts.set(
        hostId,
        await startHostAgent(
          stack.env({
            CCM_HOST_ID: hostId,
            CCM_INSTANCE_ID: `${hostId}-kb-test`,
            CCM_HYPERVISOR: 'sim',
            CCM_SEV: 'emulated',
            CCM_SEV_LAB_DIR: join(work, 'lab'),
            CCM_RUN_DIR: join(work, hostId),
          }),
        ),
      );
    }
    // The broker holds the guest-agent's identity (the stack's) and seals it into launch secrets.
    ({ app: broker } = await createServiceApp(
      keyBroker,
      stack.env({ CCM_INSTANCE_ID: 'kb-test', CCM_GUEST_AGENT_KEYS_DIR: stack.keysDir }),
    ));
    await broker.init();
    const spy = await stack.connectAs('operator');
    const sub = spy.subscribe('ccm.evt.>');
    void (async () => {
      for await (const m of sub) events.push({ subject: m.subject, text: m.string() });
    })();
  } catch (err) {
    await close();
    throw err;
  }
  return {
    stack,
    lab,
    work,
    broker,
    hosts,
    events,
    async spyAll() {
      const spied: Array<{ subject: string; data: Buffer }> = [];
      const sub = (await stack.connectSpy()).subscribe('>');
      void (async () => {
        for await (const m of sub) spied.push({ subject: m.subject, data: Buffer.from(m.data) });
      })();
      return spied;
    },
    async send(signer, subject, data, reply, key) {
      let nc = conns.get(signer);
      // A host-agent speaks as the first host's pinned identity (the stack makes no unpinned one).
      const scope = signer === 'host-agent' ? hostIds[0] : undefined;
      if (!nc) conns.set(signer, (nc = await stack.connectAs(signer, scope)));
      const identity = await loadIdentity(stack.keysDir, signer, scope);
      return signedRequest(nc, identity, trust, subject, data, reply, {
        idempotencyKey: key ?? randomUUID(),
        timeoutMs: 20_000,
      });
    },
    close,
  };
}

export { stepCommand } from '@ccm/testing';

/**
 * The guest owner's `put-policy` as a test writes it again and again: each call puts `base()` with
 * `over` replacing top-level fields, as the next version (optimistic `expectedVersion`).
 */
export function policyWriter(
  kb: () => BrokerStack,
  base: () => Partial<OwnerPolicyInput>,
): (over?: Partial<OwnerPolicyInput>) => Promise<void> {
  let version = 0;
  return async (over = {}) => {
    const v = await kb().send(
      GUEST_OWNER,
      keyBrokerSubject(KEY_BROKER_VERBS.putPolicy),
      { policy: policy({ ...base(), ...over }), expectedVersion: version },
      PolicyVersionSchema,
    );
    version = v.version;
  };
}
