import { createHash } from 'node:crypto';
import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { CcmError, type ContainerInfo, ErrorCodes, GuestErrorCodes, type RoundReport } from '@ccm/contracts';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { generateIdentityKey, type IdentityKey, KeyUnsealError, unsealMigrationKey } from '@ccm/sealing';
import { type GuestAgentConfig } from '../config.js';
import { decodeImage, encodeImage } from '../sim/image.js';
import { PAGE_BYTES, SimContainer } from '../sim/sim-container.js';
import { type Reception, RoundReceiver } from '../stream/receiver.js';
import { sendRound } from '../stream/sender.js';

const conflict = (msg: string, details: Record<string, unknown> = {}) =>
  new CcmError(GuestErrorCodes.BadContainerState, msg, { retryable: false, details });

/**
 * The guest-agent's checkpoint engine on the sim driver: containers, the identity key, migration keys
 * (held only in this process's memory), rounds received and sent. Every command is idempotent by what it
 * names: a round already sent answers with its report, a round already listening answers its address.
 */
@Injectable()
export class CheckpointService implements OnModuleDestroy {
  readonly identity: IdentityKey = generateIdentityKey();
  private readonly containers = new Map<string, SimContainer>();
  private readonly keys = new Map<string, { keyId: string; key: Buffer }>();
  /** Each workload's secret the key-broker issued to this guest (the newest generation). */
  private readonly secrets = new Map<string, { secretId: string; generation: number; secret: Buffer }>();
  private readonly receivers = new Map<
    string,
    { receiver: RoundReceiver; address: { host: string; port: number } }
  >();
  private readonly sent = new Map<string, RoundReport>();

  constructor(@Inject(SERVICE_CONFIG) private readonly config: GuestAgentConfig) {}

  onModuleDestroy(): void {
    for (const r of this.receivers.values()) r.receiver.close();
    for (const c of this.containers.values()) c.kill();
  }

  run(id: string, pages: number, dirtyPagesPerSec: number): ContainerInfo {
    const have = this.containers.get(id);
    if (have) {
      if (have.pages !== pages || have.dirtyPagesPerSec !== dirtyPagesPerSec)
        throw new CcmError(ErrorCodes.Conflict, `container ${id} exists with another spec`, {
          retryable: false,
        });
      return have.info();
    }
    const c = new SimContainer(id, pages, dirtyPagesPerSec);
    this.containers.set(id, c);
    return c.info();
  }

  list(): ContainerInfo[] {
    return [...this.containers.values()].map((c) => c.info());
  }

  container(id: string): SimContainer {
    const c = this.containers.get(id);
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
    const receiver = new RoundReceiver(this.key(migrationId), { migrationId, round }, () => undefined);
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
    const c = this.container(containerId);
    if (c.state !== 'running' && !(final && c.state === 'frozen')) {
      throw conflict(`container ${containerId} is ${c.state}`, { state: c.state });
    }
    c.migrationId = migrationId;
    const started = performance.now();
    if (final) c.freeze();
    const { indices, data } = c.takeDirty();
    const image = encodeImage(
      { containerId, round, pages: c.pages, dirtyPagesPerSec: c.dirtyPagesPerSec, final },
      indices,
      data,
    );
    // A round that did not arrive whole leaves its pages dirty: the round's retry sends them again.
    const r = await sendRound(
      key,
      target,
      { migrationId, round },
      image,
      this.config.CCM_GUEST_STREAM_TIMEOUT_MS,
      this.config.CCM_GUEST_STREAM_CHUNK_BYTES,
    ).catch((e: unknown) => {
      c.markDirty(indices);
      throw e;
    });
    const report: RoundReport = {
      round,
      pages: indices.length,
      imageBytes: r.bytes,
      chunks: r.chunks,
      durationMs: performance.now() - started,
      dirtyPages: c.dirtyPages,
    };
    this.sent.set(k, report);
    return report;
  }

  /** Target: builds the container from rounds 1..n, not resumed; refuses unless every round came whole. */
  restore(migrationId: string, containerId: string, rounds: number): ContainerInfo {
    const have = this.containers.get(containerId);
    if (have?.migrationId === migrationId && have.state !== 'killed') return have.info();
    if (have && have.state !== 'killed')
      throw conflict(`container ${containerId} already runs here`, { state: have.state });
    let memory: Buffer | undefined;
    let meta: { pages: number; dirtyPagesPerSec: number; final: boolean } | undefined;
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
      const img = decodeImage(r.image);
      if (img.meta.containerId !== containerId || img.meta.round !== round)
        throw new CcmError(
          GuestErrorCodes.ImagesIncomplete,
          `round ${round} holds another container or round`,
          { retryable: false },
        );
      memory ??= Buffer.alloc(img.meta.pages * PAGE_BYTES);
      for (const p of img.pages) p.data.copy(memory, p.index * PAGE_BYTES);
      meta = img.meta;
    }
    if (!memory || !meta?.final)
      throw new CcmError(GuestErrorCodes.ImagesIncomplete, `round ${rounds} is not a final dump`, {
        retryable: false,
      });
    const c = new SimContainer(containerId, meta.pages, meta.dirtyPagesPerSec, memory, 'restored');
    c.migrationId = migrationId;
    this.containers.set(containerId, c);
    return c.info();
  }

  resume(containerId: string): ContainerInfo {
    const c = this.container(containerId);
    if (c.state === 'running') return c.info();
    if (c.state !== 'restored')
      throw conflict(`container ${containerId} is ${c.state}, not restored`, { state: c.state });
    c.run();
    return c.info();
  }

  thaw(containerId: string): ContainerInfo {
    const c = this.container(containerId);
    if (c.state === 'running') return c.info();
    if (c.state !== 'frozen')
      throw conflict(`container ${containerId} is ${c.state}, not frozen`, { state: c.state });
    c.run();
    c.migrationId = undefined;
    return c.info();
  }

  kill(containerId: string): ContainerInfo {
    const c = this.container(containerId);
    c.kill();
    return c.info();
  }

  discard(migrationId: string): { rounds: number } {
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
    return { rounds };
  }
}
