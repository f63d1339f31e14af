import { CcmError, type ContainerInfo, type ContainerNetwork, GuestErrorCodes } from '@ccm/contracts';
import { type ContainerDriver, type ContainerSpec, type RoundImage } from '../driver/driver.js';
import { decodeImage, encodeImage } from './image.js';
import { PAGE_BYTES, SimContainer } from './sim-container.js';

/**
 * The sim driver: containers are {@link SimContainer} page models in this process. A container's
 * `network` is only remembered (a repeated run-container with the same spec is no conflict): the sim
 * has no network, and its images do not carry it.
 */
export class SimDriver implements ContainerDriver {
  readonly kind = 'sim';
  private readonly containers = new Map<string, SimContainer>();
  private readonly networks = new Map<string, ContainerNetwork>();

  run(id: string, spec: ContainerSpec): Promise<ContainerInfo> {
    const c = new SimContainer(id, spec.pages, spec.dirtyPagesPerSec);
    this.containers.set(id, c);
    if (spec.network) this.networks.set(id, spec.network);
    else this.networks.delete(id);
    return Promise.resolve(c.info());
  }

  spec(id: string): ContainerSpec | undefined {
    const c = this.containers.get(id);
    const network = this.networks.get(id);
    return c && network ? { pages: c.pages, dirtyPagesPerSec: c.dirtyPagesPerSec, network } : c;
  }

  list(): Promise<ContainerInfo[]> {
    return Promise.resolve([...this.containers.values()].map((c) => c.info()));
  }

  describe(id: string): Promise<ContainerInfo | undefined> {
    return Promise.resolve(this.containers.get(id)?.info());
  }

  private get(id: string): SimContainer {
    const c = this.containers.get(id);
    if (!c) throw new Error(`sim container ${id} vanished`);
    return c;
  }

  checkpoint(migrationId: string, id: string, round: number, final: boolean): Promise<RoundImage> {
    const c = this.get(id);
    c.migrationId = migrationId;
    if (final) c.freeze();
    const { indices, data } = c.takeDirty();
    const image = encodeImage(
      { containerId: id, round, pages: c.pages, dirtyPagesPerSec: c.dirtyPagesPerSec, final },
      indices,
      data,
    );
    return Promise.resolve({
      image,
      pages: indices.length,
      dirtyPages: () => Promise.resolve(c.dirtyPages),
      failed: () => c.markDirty(indices),
    });
  }

  restore(migrationId: string, id: string, images: readonly Buffer[]): Promise<ContainerInfo> {
    let memory: Buffer | undefined;
    let meta: { pages: number; dirtyPagesPerSec: number; final: boolean } | undefined;
    images.forEach((b, i) => {
      const round = i + 1;
      const img = decodeImage(b);
      if (img.meta.containerId !== id || img.meta.round !== round)
        throw new CcmError(
          GuestErrorCodes.ImagesIncomplete,
          `round ${round} holds another container or round`,
          {
            retryable: false,
          },
        );
      memory ??= Buffer.alloc(img.meta.pages * PAGE_BYTES);
      for (const p of img.pages) p.data.copy(memory, p.index * PAGE_BYTES);
      meta = img.meta;
    });
    if (!memory || !meta?.final)
      throw new CcmError(GuestErrorCodes.ImagesIncomplete, `round ${images.length} is not a final dump`, {
        retryable: false,
      });
    const c = new SimContainer(id, meta.pages, meta.dirtyPagesPerSec, memory, 'restored');
    c.migrationId = migrationId;
    this.containers.set(id, c);
    return Promise.resolve(c.info());
  }

  resume(id: string): Promise<ContainerInfo> {
    const c = this.get(id);
    if (c.state === 'frozen') c.migrationId = undefined;
    c.run();
    return Promise.resolve(c.info());
  }

  kill(id: string): Promise<ContainerInfo> {
    const c = this.get(id);
    c.kill();
    return Promise.resolve(c.info());
  }

  discard(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    for (const c of this.containers.values()) c.kill();
    return Promise.resolve();
  }
}
