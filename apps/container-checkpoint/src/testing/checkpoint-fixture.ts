import { randomBytes, randomUUID } from 'node:crypto';
import { type INestApplication } from '@nestjs/common';
import { CcmError, subjects, type SignerName, type StepCommand } from '@ccm/contracts';
import { loadTrustStore, type Identity, type TrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { createServiceApp } from '@ccm/runtime';
import { sealMigrationKey } from '@ccm/sealing';
import {
  guestClient,
  pollUntil,
  startGuest,
  startTestStack,
  stepCommand,
  type GuestClient,
  type GuestProcess,
  type TestStack,
} from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { containerCheckpoint } from '../app.js';

export const SOURCE = 'vm-src';
export const TARGET = 'vm-dst';

/** Fast guest streams for tests: 16 KiB chunks, a 10 s stream timeout. */
const GUEST_ENV = { CCM_GUEST_STREAM_CHUNK_BYTES: '16384', CCM_GUEST_STREAM_TIMEOUT_MS: '10000' };

/**
 * A real stack (nats-server, Postgres, keys) with the real container-checkpoint app in this process
 * and two real guest-agent processes (sim driver): the source and target guests. Step commands are
 * signed as the saga-coordinator (or any identity a test plays); guests are set up as the operator.
 */
export class CheckpointFixture {
  readonly guests = new Map<string, GuestProcess>();
  private readonly conns = new Map<SignerName, { nc: NatsConnection; id: Identity }>();
  private readonly publicKeys = new Map<string, Buffer>();

  private constructor(
    readonly stack: TestStack,
    readonly trust: TrustStore,
    readonly app: INestApplication,
    readonly g: GuestClient,
    private readonly operatorNc: NatsConnection,
  ) {}

  static async start(env: Record<string, string> = {}): Promise<CheckpointFixture> {
    const stack = await startTestStack();
    const { app } = await createServiceApp(
      containerCheckpoint,
      stack.env({ CCM_INSTANCE_ID: 'checkpoint-1', CCM_CHECKPOINT_GUEST_TIMEOUT_MS: '8000', ...env }),
    );
    await app.init();
    const nc = await stack.connectAs('operator');
    const f = new CheckpointFixture(
      stack,
      await loadTrustStore(stack.keysDir),
      app,
      await guestClient(nc, stack.keysDir),
      nc,
    );
    await Promise.all([f.startGuest(SOURCE), f.startGuest(TARGET)]);
    return f;
  }

  /** Starts (or restarts) a guest-agent process; a restarted guest has a new identity and no state. */
  async startGuest(vmId: string): Promise<void> {
    await this.guests.get(vmId)?.stop();
    this.guests.set(vmId, await startGuest(this.stack, vmId, this.g.send, GUEST_ENV));
    const { publicKey } = await this.g.send(vmId, 'identity', {});
    this.publicKeys.set(vmId, Buffer.from(publicKey as string, 'base64'));
  }

  async stop(): Promise<void> {
    await Promise.allSettled([...this.guests.values()].map((g) => g.stop()));
    await Promise.allSettled(
      [...this.conns.values()].filter((c) => c.nc !== this.operatorNc).map((c) => c.nc.close()),
    );
    await this.operatorNc.close().catch(() => undefined);
    await this.app.close();
    await this.stack.stop();
  }

  /** A counting container on the source guest. */
  async runContainer(id: string, pages: number, dirtyPagesPerSec: number): Promise<void> {
    await this.g.send(SOURCE, 'run-container', { id, pages, dirtyPagesPerSec });
    await pollUntil(
      `${id} counts`,
      () => this.counter(SOURCE, id),
      (c) => c > 2,
    );
  }

  /**
   * The migration key sealed to both guests' identity keys and loaded into each, as the key-broker's
   * release-migration-key delivers it (guest-to-guest-migration.int-spec.ts does the same).
   */
  async loadKey(migrationId: string): Promise<void> {
    const key = randomBytes(32);
    for (const vm of [SOURCE, TARGET]) {
      const sealedKey = sealMigrationKey(key, this.publicKeys.get(vm)!, { migrationId, keyId: 'mk-1' });
      await this.g.send(vm, 'load-key', {
        migrationId,
        keyId: 'mk-1',
        sealedKey: sealedKey.toString('base64'),
      });
    }
  }

  async describe(vm: string, id: string): Promise<Record<string, unknown>> {
    return this.g.send(vm, 'describe', { id });
  }

  async counter(vm: string, id: string): Promise<number> {
    return (await this.describe(vm, id)).counter as number;
  }

  /**
   * Sends a step command signed by `as` (default the coordinator); resolves with the result or the
   * typed error (never throws a CcmError). Any other signer's envelope travels over the operator's
   * connection, which may publish commands: the service's own check is what refuses it.
   */
  async send(verb: string, data: unknown, o: { as?: SignerName; key?: string } = {}): Promise<unknown> {
    const as = o.as ?? 'saga-coordinator';
    let c = this.conns.get(as);
    if (!c) {
      const nc = as === 'saga-coordinator' ? await this.stack.connectAs(as) : this.operatorNc;
      c = { nc, id: await this.stack.identity(as) };
      this.conns.set(as, c);
    }
    return signedRequest(
      c.nc,
      c.id,
      this.trust,
      subjects.cmd('container-checkpoint', verb),
      data,
      z.unknown(),
      {
        idempotencyKey: o.key ?? randomUUID(),
        timeoutMs: 60_000,
      },
    ).catch((err: unknown) => {
      if (err instanceof CcmError) return err;
      throw err;
    });
  }

  /** Sends step `step`'s action or compensation as the coordinator does (its idempotency key). */
  step(cmd: StepCommand, verb: string): Promise<unknown> {
    const key = `${cmd.migrationId}:${cmd.step}:${cmd.kind === 'compensation' ? 'compensate:' : ''}${cmd.attempt}`;
    return this.send(verb, cmd, { key });
  }
}

/** A container saga step command for `containerId` moving SOURCE → TARGET. */
export function checkpointCommand(
  containerId: string,
  over: Partial<StepCommand> & { migrationId?: string } = {},
): StepCommand {
  return stepCommand({
    step: 'pre-copy',
    workload: { id: containerId, kind: 'container' },
    context: { sourceVmId: SOURCE, targetVmId: TARGET },
    ...over,
  });
}
