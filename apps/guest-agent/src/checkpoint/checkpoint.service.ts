import { createHash } from 'node:crypto';
import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import {
  CcmError,
  type ContainerInfo,
  ErrorCodes,
  GuestErrorCodes,
  isCcmError,
  type RoundReport,
} from '@ccm/contracts';
import { Phases, SERVICE_CONFIG } from '@ccm/runtime';
import { generateIdentityKey, type IdentityKey, KeyUnsealError, unsealMigrationKey } from '@ccm/sealing';
import { type GuestAgentConfig } from '../config.js';
import { type ContainerDriver, type ContainerSpec } from '../driver/driver.js';
import { RuncDriver } from '../runc/runc-driver.js';
import { SimDriver } from '../sim/sim-driver.js';
import { type Reception, RoundReceiver } from '../stream/receiver.js';
import { sendRound } from '../stream/sender.js';

const conflict = (msg: string, details: Record<string, unknown> = {}) =>
  new CcmError(GuestErrorCodes.BadContainerState, msg, { retryable: false, details });

/**
 * The guest-agent's checkpoint engine: containers (through the configured {@link ContainerDriver}: sim
 * or runc), the identity key, migration keys (held only in this process's memory), rounds received and
 * sent. Every command is idempotent by what it names: a round already sent answers with its report, a
 * round already listening answers its address.
 */
@Injectable()
export class CheckpointService implements OnModuleDestroy {
  readonly identity: IdentityKey = generateIdentityKey();
  readonly driver: ContainerDriver;
  private readonly keys = new Map<string, { keyId: string; key: Buffer }>();
  /** Each workload's secret the key-broker issued to this guest (the newest generation). */
  private readonly secrets = new Map<string, { secretId: string; generation: number; secret: Buffer }>();
  private readonly receivers = new Map<
    string,
    { receiver: RoundReceiver; address: { host: string; port: number } }
  >();
  private readonly sent = new Map<string, RoundReport>();

  constructor(@Inject(SERVICE_CONFIG) private readonly config: GuestAgentConfig) {
    this.driver = config.CCM_GUEST_DRIVER === 'runc' ? new RuncDriver(config) : new SimDriver();
  }

  async onModuleDestroy(): Promise<void> {
    for (const r of this.receivers.values()) r.receiver.close();
    await this.driver.close();
  }

  async run(id: string, spec: ContainerSpec): Promise<ContainerInfo> {
    const have = this.driver.spec(id);
    if (have) {
      if (
        have.pages !== spec.pages ||
        have.dirtyPagesPerSec !== spec.dirtyPagesPerSec ||
        have.network?.address !== spec.network?.address ||
        have.network?.port !== spec.network?.port
      )
        throw new CcmError(ErrorCodes.Conflict, `container ${id} exists with another spec`, {
          retryable: false,
        });
      return this.container(id);
    }
    return this.driver.run(id, spec);
  }

  list(): Promise<ContainerInfo[]> {
    return this.driver.list();
  }

  async container(id: string): Promise<ContainerInfo> {
    const c = await this.driver.describe(id);
    if (!c) throw new CcmError(ErrorCodes.NotFound, `no container ${id}`, { retryable: false });
    return c;
  }

  loadKey(migrationId: string, keyId: string, sealedKey: Buffer): { keyId: string } {
    try {
      const key = unsealMigrationKey(sealedKey, this.identity, { migrationId, keyId });
      this.keys.set(migrationId, { keyId, key });
      return { keyId };
    } catch (e) {
      const reason = e instanceof KeyUnsealError ? e.reason : 'unknown';
      throw new CcmError(GuestErrorCodes.KeyUnsealFailed, `the migration key does not open here: ${reason}`, {
        retryable: false,
      });
    }
  }

  /**
   * Takes a workload's secret sealed to this guest's identity key (bound to the migration that moved
   * the workload here and the secret's id); an older generation never replaces a newer one.
   * @throws CcmError KEY_UNSEAL_FAILED when it does not open here.
   */
  loadSecret(
    workloadId: string,
    migrationId: string,
    secretId: string,
    generation: number,
    sealed: Buffer,
  ): { secretId: string; generation: number; sha256: string } {
    let secret: Buffer;
    try {
      secret = unsealMigrationKey(sealed, this.identity, { migrationId, keyId: secretId });
    } catch (e) {
      const reason = e instanceof KeyUnsealError ? e.reason : 'unknown';
      throw new CcmError(
        GuestErrorCodes.KeyUnsealFailed,
        `the workload secret does not open here: ${reason}`,
        {
          retryable: false,
        },
      );
    }
    const held = this.secrets.get(workloadId);
    if (!held || held.generation <= generation) {
      held?.secret.fill(0);
      this.secrets.set(workloadId, { secretId, generation, secret });
    }
    return { secretId, generation, sha256: createHash('sha256').update(secret).digest('hex') };
  }

  /** Forgets a migration's key (zeroed first); true when there was one. */
  dropKey(migrationId: string): boolean {
    const k = this.keys.get(migrationId);
    k?.key.fill(0);
    return this.keys.delete(migrationId);
  }

  private key(migrationId: string): Buffer {
    const k = this.keys.get(migrationId);
    if (!k)
      throw new CcmError(GuestErrorCodes.NoMigrationKey, `no migration key for ${migrationId}`, {
        retryable: false,
      });
    return k.key;
  }

  /** Target: listen for a round (idempotent: the same round answers the same address while open). */
  async receive(
    migrationId: string,
    containerId: string,
    round: number,
  ): Promise<{ host: string; port: number }> {
    const k = `${migrationId}:${containerId}:${round}`;
    const have = this.receivers.get(k);
    if (have && have.receiver.reception.status !== 'refused') return have.address;
    have?.receiver.close();
    const key = this.key(migrationId);
    // The driver writes the round as its chunks open; it becomes the round's only at the OK verdict.
    const stager = this.driver.stager?.(migrationId, containerId, round);
    const receiver = new RoundReceiver(
      key,
      { migrationId, round },
      (r) => {
        if (r.status === 'complete') void stager?.complete(r.image);
        else stager?.abort();
      },
      stager && ((plaintext) => stager.push(plaintext)),
    );
    const address = await receiver.listen(this.config.CCM_GUEST_STREAM_HOST);
    this.receivers.set(k, { receiver, address });
    return address;
  }

  reception(migrationId: string, containerId: string, round: number): Reception | undefined {
    return this.receivers.get(`${migrationId}:${containerId}:${round}`)?.receiver.reception;
  }

  /** Source: a pre-dump round (the container runs on) or the final dump (frozen first). */
  async sendRound(
    migrationId: string,
    containerId: string,
    round: number,
    target: { host: string; port: number },
    final: boolean,
  ): Promise<RoundReport> {
    const k = `${migrationId}:${containerId}:${round}`;
    const done = this.sent.get(k);
    if (done) return done;
    const key = this.key(migrationId);
    const p = new Phases();
    const c = await p.time('describe', () => this.container(containerId));
    if (c.state !== 'running' && !(final && c.state === 'frozen')) {
      throw conflict(`container ${containerId} is ${c.state}`, { state: c.state });
    }
    const started = performance.now();
    const img = await this.driver.checkpoint(migrationId, containerId, round, final);
    for (const [name, ms] of Object.entries(img.phasesMs ?? {})) p.add(name, ms);
    // A round that did not arrive whole leaves its pages dirty: the round's retry sends them again.
    const r = await p.time('stream', () =>
      sendRound(
        key,
        target,
        { migrationId, round },
        img.image,
        this.config.CCM_GUEST_STREAM_TIMEOUT_MS,
        this.config.CCM_GUEST_STREAM_CHUNK_BYTES,
        this.config.CCM_GUEST_STREAM_STALL_MS,
      ).catch((e: unknown) => {
        img.failed();
        throw e;
      }),
    );
    const report: RoundReport = {
      round,
      pages: img.pages,
      imageBytes: r.bytes,
      chunks: r.chunks,
      durationMs: performance.now() - started,
      dirtyPages: await p.time('dirtyCount', () => img.dirtyPages()),
      ...(img.runtimeMs !== undefined ? { runtimeMs: img.runtimeMs } : {}),
      ...(img.phasesMs ? { phasesMs: p.ms } : {}),
    };
    this.sent.set(k, report);
    return report;
  }

  /**
   * Target: builds the container from rounds 1..n; refuses unless every round came whole. Not resumed,
   * unless `resume` (then it runs when this answers; a repeated command resumes one restored before).
   */
  async restore(
    migrationId: string,
    containerId: string,
    rounds: number,
    resume = false,
  ): Promise<ContainerInfo> {
    const have = await this.driver.describe(containerId);
    if (have?.migrationId === migrationId && have.state !== 'killed')
      return resume && have.state === 'restored' ? this.resumeRestored(containerId) : have;
    if (have && have.state !== 'killed')
      throw conflict(`container ${containerId} already runs here`, { state: have.state });
    const images: Buffer[] = [];
    for (let round = 1; round <= rounds; round++) {
      const r = this.reception(migrationId, containerId, round);
      if (r?.status !== 'complete') {
        throw new CcmError(
          GuestErrorCodes.ImagesIncomplete,
          `round ${round} is ${r ? r.status : 'missing'}${r?.status === 'refused' ? `: ${r.error.message}` : ''}`,
          {
            retryable: false,
            details: { round, status: r?.status ?? 'missing' },
          },
        );
      }
      images.push(r.image);
    }
    const restored = await this.driver.restore(migrationId, containerId, images);
    if (!resume) return restored;
    const resumed = await this.resumeRestored(containerId);
    return {
      ...resumed,
      ...(restored.phasesMs ? { phasesMs: restored.phasesMs } : {}),
      ...(resumed.phasesMs ? { resumePhasesMs: resumed.phasesMs } : {}),
    };
  }

  /**
   * The resume of `restore` with `resume`: a failure says the container is there, restored
   * (`details.restored`), so the caller knows the command took effect.
   */
  private resumeRestored(containerId: string): Promise<ContainerInfo> {
    return this.driver.resume(containerId).catch((e: unknown) => {
      const err = isCcmError(e) ? e : undefined;
      throw new CcmError(
        err?.code ?? GuestErrorCodes.ContainerRuntimeFailed,
        `restored, but the resume failed: ${e instanceof Error ? e.message : String(e)}`,
        {
          retryable: err?.retryable ?? true,
          effect: 'maybe',
          details: { ...err?.details, restored: true },
          cause: e,
        },
      );
    });
  }

  async resume(containerId: string): Promise<ContainerInfo> {
    const c = await this.container(containerId);
    if (c.state === 'running') return c;
    if (c.state !== 'restored')
      throw conflict(`container ${containerId} is ${c.state}, not restored`, { state: c.state });
    return this.driver.resume(containerId);
  }

  async thaw(containerId: string): Promise<ContainerInfo> {
    const c = await this.container(containerId);
    if (c.state === 'running') return c;
    if (c.state !== 'frozen')
      throw conflict(`container ${containerId} is ${c.state}, not frozen`, { state: c.state });
    return this.driver.resume(containerId);
  }

  async kill(containerId: string): Promise<ContainerInfo> {
    await this.container(containerId);
    return this.driver.kill(containerId);
  }

  async discard(migrationId: string): Promise<{ rounds: number }> {
    let rounds = 0;
    for (const [k, r] of this.receivers) {
      if (k.startsWith(`${migrationId}:`)) {
        r.receiver.close();
        this.receivers.delete(k);
        rounds++;
      }
    }
    for (const k of this.sent.keys()) if (k.startsWith(`${migrationId}:`)) this.sent.delete(k);
    this.dropKey(migrationId);
    await this.driver.discard(migrationId);
    return { rounds };
  }
}
