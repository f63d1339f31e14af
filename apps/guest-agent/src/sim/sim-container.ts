import { randomInt } from 'node:crypto';
import { type ContainerInfo, type ContainerState } from '@ccm/contracts';

export const PAGE_BYTES = 4096;
/** How often the simulated workload runs: counts once and dirties its share of pages. */
export const SIM_TICK_MS = 50;

/**
 * The sim driver's process model of a container: memory as pages, a workload that counts (its counter
 * lives in page 0, so a restore that lost memory loses the count) and dirties pages at a set rate, and
 * a dirty log like soft-dirty, cleared by each pre-dump round.
 */
export class SimContainer {
  readonly memory: Buffer;
  private readonly dirty: Uint8Array;
  private dirtyCount = 0;
  private timer: NodeJS.Timeout | undefined;
  state: ContainerState;
  migrationId: string | undefined;

  constructor(
    readonly id: string,
    readonly pages: number,
    readonly dirtyPagesPerSec: number,
    memory?: Buffer,
    state: ContainerState = 'running',
  ) {
    this.memory = memory ?? Buffer.alloc(pages * PAGE_BYTES);
    this.dirty = new Uint8Array(pages).fill(1);
    this.dirtyCount = pages;
    this.state = state;
    if (state === 'running') this.start();
  }

  get counter(): number {
    return Number(this.memory.readBigUInt64LE(0));
  }

  info(): ContainerInfo {
    return {
      id: this.id,
      state: this.state,
      pages: this.pages,
      counter: this.counter,
      ...(this.migrationId ? { migrationId: this.migrationId } : {}),
    };
  }

  private start(): void {
    const perTick = (this.dirtyPagesPerSec * SIM_TICK_MS) / 1000;
    let carry = 0;
    this.timer = setInterval(() => {
      this.memory.writeBigUInt64LE(BigInt(this.counter + 1), 0);
      this.mark(0);
      carry += perTick;
      for (; carry >= 1; carry--) {
        const p = randomInt(this.pages);
        this.memory.writeUInt32LE(this.counter, p * PAGE_BYTES + 8);
        this.mark(p);
      }
    }, SIM_TICK_MS);
    this.timer.unref();
  }

  private mark(p: number): void {
    if (this.dirty[p] === 0) {
      this.dirty[p] = 1;
      this.dirtyCount++;
    }
  }

  get dirtyPages(): number {
    return this.dirtyCount;
  }

  /** Marks pages dirty again (a round that carried them failed). */
  markDirty(indices: readonly number[]): void {
    for (const p of indices) this.mark(p);
  }

  /** Takes the dirty pages (a copy, consistent at this instant) and clears the dirty log. */
  takeDirty(): { indices: number[]; data: Buffer } {
    const indices: number[] = [];
    for (let p = 0; p < this.pages; p++) if (this.dirty[p]) indices.push(p);
    const data = Buffer.alloc(indices.length * PAGE_BYTES);
    indices.forEach((p, i) => this.memory.copy(data, i * PAGE_BYTES, p * PAGE_BYTES, (p + 1) * PAGE_BYTES));
    this.dirty.fill(0);
    this.dirtyCount = 0;
    return { indices, data };
  }

  freeze(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.state = 'frozen';
  }

  /** Runs again: a thawed source (rollback) or a restored target (resume). */
  run(): void {
    if (this.timer === undefined) this.start();
    this.state = 'running';
  }

  kill(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.state = 'killed';
  }
}
