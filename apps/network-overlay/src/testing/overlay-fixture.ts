import { type INestApplication } from '@nestjs/common';
import {
  CcmError,
  type OVERLAY_ADMISSION_TYPE,
  subjects,
  type Envelope,
  type OverlayAdmission,
  type SignerName,
  type StepCommand,
} from '@ccm/contracts';
import { loadTrustStore, type Identity, type TrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { createServiceApp } from '@ccm/runtime';
import { overlayAdmission, startTestStack, type TestStack } from '@ccm/testing';
import { generateKeyPair } from '@ccm/wireguard';
import { type NatsConnection } from '@nats-io/transport-node';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { networkOverlay, driverProvider } from '../app.js';
import { OVERLAY_DRIVER, type OverlayDriver } from '../driver/driver.js';

/**
 * A real test stack (nats-server, Postgres, keys) with network-overlay replicas in this process that
 * share one node driver, and clients that sign as any identity.
 */
export class OverlayFixture {
  readonly apps: INestApplication[] = [];
  private readonly conns = new Map<SignerName, { nc: NatsConnection; id: Identity }>();

  private constructor(
    readonly stack: TestStack,
    readonly trust: TrustStore,
    readonly driver: OverlayDriver | undefined,
  ) {}

  /** Without a driver, the one CCM_OVERLAY_DRIVER in `env` names (e.g. `guest`). */
  static async start(
    driver: OverlayDriver | undefined,
    replicas = 1,
    env: Record<string, string> = {},
    stackOptions: Parameters<typeof startTestStack>[0] = {},
  ): Promise<OverlayFixture> {
    const stack = await startTestStack(stackOptions);
    const f = new OverlayFixture(stack, await loadTrustStore(stack.keysDir), driver);
    const providers = (networkOverlay.providers ?? []).filter((p) => !driver || p !== driverProvider);
    const def = {
      ...networkOverlay,
      providers: driver ? [{ provide: OVERLAY_DRIVER, useValue: driver }, ...providers] : providers,
    };
    for (let i = 1; i <= replicas; i++) {
      const { app } = await createServiceApp(def, stack.env({ CCM_INSTANCE_ID: `overlay-${i}`, ...env }));
      await app.init();
      f.apps.push(app);
    }
    return f;
  }

  /** Sends `verb` as `as`; resolves with the result or the typed error (never throws a CcmError). */
  async send(as: SignerName, verb: string, data: unknown, key: string = randomUUID()): Promise<unknown> {
    let c = this.conns.get(as);
    if (!c) {
      c = { nc: await this.stack.connectAs(as), id: await this.stack.identity(as) };
      this.conns.set(as, c);
    }
    const subject = subjects.cmd('network-overlay', verb);
    return signedRequest(c.nc, c.id, this.trust, subject, data, z.unknown(), {
      idempotencyKey: key,
      timeoutMs: 20_000,
    }).catch((err: unknown) => {
      if (err instanceof CcmError) return err;
      throw err;
    });
  }

  /** An admission statement signed by `signer` (the key-broker unless a test plays an attacker). */
  async admission(
    vmId: string,
    wgPublicKey: string,
    opts: { signer?: SignerName; verifiedAgoMs?: number; endpoint?: string } = {},
  ): Promise<Envelope<OverlayAdmission> & { type: typeof OVERLAY_ADMISSION_TYPE }> {
    const { signer, ...rest } = opts;
    return overlayAdmission(await this.stack.identity(signer ?? 'key-broker'), vmId, wgPublicKey, rest);
  }

  /** A saga step command as the coordinator sends it. */
  step(
    verb: string,
    migrationId: string,
    workloadId: string,
    context: StepCommand['context'],
    kind: StepCommand['kind'] = 'action',
  ): StepCommand {
    return {
      migrationId,
      saga: 'container-migration@1',
      step: verb,
      kind,
      attempt: 1,
      workload: { id: workloadId, kind: 'container' },
      sourceHost: 'host-a',
      targetHost: 'host-b',
      context,
    };
  }

  static newKey(): string {
    return generateKeyPair().publicKey;
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.apps.map((a) => a.close()));
    await this.stack.stop();
  }
}
