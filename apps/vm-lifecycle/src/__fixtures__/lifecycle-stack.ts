import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type INestApplication } from '@nestjs/common';
import { type SignerName } from '@ccm/contracts';
import { loadIdentity, loadTrustStore, type TrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { createServiceApp } from '@ccm/runtime';
import { LabAuthority } from '@ccm/sev-emulator';
import { startServiceProcess, startTestStack, type ServiceProcess, type TestStack } from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { type z } from 'zod';
import { vmLifecycle } from '../app.js';

/**
 * A vm-lifecycle (in this process, HTTP on a free port) on a throw-away stack with real participants
 * as processes from dist/: host-agents on the simulated hypervisor with the software secure processor
 * (one lab endorses them all) and a key-broker. Signed clients for any identity.
 */
export interface LifecycleStack {
  stack: TestStack;
  lab: LabAuthority;
  work: string;
  trust: TrustStore;
  app: INestApplication;
  httpUrl: string;
  hosts: Map<string, ServiceProcess>;
  keyBroker: ServiceProcess;
  startHost(hostId: string): Promise<ServiceProcess>;
  /** A signed request as `signer`; a fresh idempotency key unless given. */
  send<S extends z.ZodType>(
    signer: SignerName,
    subject: string,
    data: unknown,
    reply: S,
    key?: string,
  ): Promise<z.infer<S>>;
  connection(signer: SignerName, scope?: string): Promise<NatsConnection>;
  close(): Promise<void>;
}

export const HEARTBEAT_MS = 300;

export async function startLifecycleStack(
  hostIds: string[],
  env: Record<string, string> = {},
): Promise<LifecycleStack> {
  // scriptedHosts: the unpinned host-agent key exists too, so the spec can show the registry refuses it.
  const stack = await startTestStack({ hostIds, scriptedHosts: true });
  const work = await mkdtemp(join(tmpdir(), 'ccm-vml-'));
  const lab = await LabAuthority.create(join(work, 'lab'), { rsaBits: 2048 });
  const trust = await loadTrustStore(stack.keysDir);
  const hosts = new Map<string, ServiceProcess>();
  const conns = new Map<string, NatsConnection>();
  let app: INestApplication | undefined;
  let keyBroker: ServiceProcess | undefined;
  const close = async () => {
    await app?.close();
    await Promise.allSettled([...hosts.values(), ...(keyBroker ? [keyBroker] : [])].map((p) => p.stop()));
    await stack.stop();
    await rm(work, { recursive: true, force: true });
  };
  const startHost = async (hostId: string) => {
    const p = await startServiceProcess(
      'host-agent',
      stack.env({
        CCM_HOST_ID: hostId,
        CCM_INSTANCE_ID: `${hostId}-${randomUUID().slice(0, 8)}`,
        CCM_HYPERVISOR: 'sim',
        CCM_SEV: 'emulated',
        CCM_SEV_LAB_DIR: join(work, 'lab'),
        CCM_RUN_DIR: join(work, hostId),
        CCM_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
        // provision-vm waits for the guest-agent inside the new VM
        CCM_SIM_GUEST_AGENT: 'true',
      }),
    );
    hosts.set(hostId, p);
    return p;
  };
  try {
    keyBroker = await startServiceProcess('key-broker', stack.env({ CCM_INSTANCE_ID: 'kb-vml-test' }));
    for (const h of hostIds) await startHost(h);
    ({ app } = await createServiceApp(vmLifecycle, stack.env({ CCM_INSTANCE_ID: 'vml-test', ...env })));
    await app.listen(0, '127.0.0.1');
  } catch (err) {
    await close();
    throw err;
  }
  const port = ((app.getHttpServer() as Server).address() as { port: number }).port;
  const connection = async (signer: SignerName, scope?: string) => {
    const k = `${signer}@${scope ?? ''}`;
    let nc = conns.get(k);
    if (!nc) conns.set(k, (nc = await stack.connectAs(signer, scope)));
    return nc;
  };
  return {
    stack,
    lab,
    work,
    trust,
    app,
    httpUrl: `http://127.0.0.1:${port}`,
    hosts,
    keyBroker,
    startHost,
    connection,
    async send(signer, subject, data, reply, key) {
      return signedRequest(
        await connection(signer),
        await loadIdentity(stack.keysDir, signer),
        trust,
        subject,
        data,
        reply,
        {
          idempotencyKey: key ?? randomUUID(),
          timeoutMs: 30_000,
        },
      );
    },
    close,
  };
}
