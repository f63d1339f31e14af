import { type ContainerInfo, type ContainerNetwork } from '@ccm/contracts';

/**
 * What a container is asked to be: a workload holding `pages` 4 KiB pages, dirtying some per second,
 * with its own network and TCP service when `network` is given (the runc driver; the sim ignores it).
 */
export interface ContainerSpec {
  readonly pages: number;
  readonly dirtyPagesPerSec: number;
  readonly network?: ContainerNetwork;
}

/** One round's checkpoint image, ready for the sealed stream. */
export interface RoundImage {
  /**
   * The plaintext the sealed stream carries (opaque to the stream): whole, or in pieces read as the
   * stream takes them (the runc driver reads CRIU's files as they are sealed and sent; consumed once).
   */
  readonly image: Buffer | AsyncIterable<Buffer>;
  /** Memory pages the round holds. */
  readonly pages: number;
  /** The container runtime's own time to dump the round (runc: CRIU), when the driver has one. */
  readonly runtimeMs?: number;
  /** The round's parts in the driver before the stream (lock, pause, criuDump, list), when it times them. */
  readonly phasesMs?: Record<string, number>;
  /** Pages dirtied since the round's snapshot, as far as the driver knows (what a next round sends). */
  dirtyPages(): Promise<number>;
  /** The round did not arrive whole: what it carried must go again in the retry. */
  failed(): void;
}

/**
 * Target: one round's reception as the driver stages it. It sees only chunks the stream opened
 * (authenticated, in order); until `complete` nothing it wrote is the round's, so a refused or cut
 * round leaves nothing a restore could use.
 */
export interface RoundStager {
  /** The next opened chunk's plaintext, in order (never throws: a stager that cannot go on stops). */
  push(plaintext: Buffer): void;
  /**
   * The round's verdict was OK (every chunk came and opened); `image` is its whole plaintext. Resolves
   * with whether the round was staged (never rejects: the restore deals with a round that was not).
   */
  complete(image: Buffer): Promise<boolean>;
  /** The round was refused or abandoned: what was written goes. */
  abort(): void;
}

/**
 * How the guest-agent's checkpoint engine runs containers: the sim driver (a page model, in process)
 * or the runc driver (runc + CRIU in the guest). The checkpoint engine keeps keys, streams and state
 * rules; a driver does the mechanics and reports containers as {@link ContainerInfo}.
 */
export interface ContainerDriver {
  readonly kind: 'sim' | 'runc';
  run(id: string, spec: ContainerSpec): Promise<ContainerInfo>;
  /** The spec a container was started with (undefined when there is no such container). */
  spec(id: string): ContainerSpec | undefined;
  list(): Promise<ContainerInfo[]>;
  /** undefined when there is no such container. */
  describe(id: string): Promise<ContainerInfo | undefined>;
  /** Pre-dump round `round` (the container runs on), or freeze and dump the final round. */
  checkpoint(migrationId: string, id: string, round: number, final: boolean): Promise<RoundImage>;
  /**
   * Target: a round starts to arrive; the driver may write it for the restore as its chunks are opened
   * (the runc driver writes CRIU's files into a staging directory and makes it the round's only at the
   * round's verdict), so the restore has less to do. Undefined when the driver stages nothing.
   */
  stager?(migrationId: string, id: string, round: number): RoundStager;
  /** Builds the container from the received rounds (images[0] is round 1; the last is the final dump), not resumed. */
  restore(migrationId: string, id: string, images: readonly Buffer[]): Promise<ContainerInfo>;
  /** Runs a restored (target) or frozen (source, rollback) container again. */
  resume(id: string): Promise<ContainerInfo>;
  kill(id: string): Promise<ContainerInfo>;
  /** Drops what the driver keeps of a migration (image directories). */
  discard(migrationId: string): Promise<void>;
  /** The agent stops: containers are stopped. */
  close(): Promise<void>;
}
