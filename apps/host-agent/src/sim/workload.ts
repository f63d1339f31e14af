import { appendFileSync } from 'node:fs';
import { PAGE_SIZE, SIM_LAYOUT, type SimMemory } from './memory.js';

/** Workload ticks per second (the tiny guest's workload slices each second the same way). */
const SLICES_PER_SEC = 20;
const MIB = 1024 * 1024;

/** The guest CPU state that moves with DEVICE (the counter itself lives in guest memory). */
export interface WorkloadState {
  cursor: number;
  touched: number;
  slice: number;
  owed: number;
}

/** `ccm.dirty_mb=` and `ccm.dirty_rate=` from a kernel command line (the tiny guest's defaults otherwise). */
export function workloadSettings(cmdline: string | undefined): { dirtyMiB: number; rateMBps: number } {
  const get = (key: string, fallback: number): number => {
    const m = new RegExp(`(?:^|\\s)ccm\\.${key}=(\\d+(?:\\.\\d+)?)`).exec(cmdline ?? '');
    return m ? Number(m[1]) : fallback;
  };
  return { dirtyMiB: get('dirty_mb', 64), rateMBps: get('dirty_rate', 10) };
}

/**
 * `ccm.panic_on_arrival=1`: the guest's kernel panics as soon as it arrives on a migration
 * destination (the failure issue 9 saw with QEMU 7.2), so tests can make a destination die after
 * switch-over deterministically.
 */
export const panicsOnArrival = (cmdline: string | undefined): boolean =>
  /(?:^|\s)ccm\.panic_on_arrival=1(?:\s|$)/.test(cmdline ?? '');

/** What the panicking guest prints on its console, as a Linux guest would. */
export const PANIC_LINE = 'Kernel panic - not syncing: Fatal exception in interrupt (ccm.panic_on_arrival)';

/**
 * The simulated guest's workload, the model of tools/guest-image's ccm-workload: it touches one byte in
 * each page of a buffer round robin at a steady rate (MB/s), and once a second increments a counter in
 * guest memory and prints `COUNTER n` on the serial console. auto-converge's throttle slows it down.
 */
export class Workload {
  /** vCPU throttle in percent (auto-converge). */
  throttle = 0;
  private timer?: NodeJS.Timeout;
  private state: WorkloadState = { cursor: 0, touched: 0, slice: 0, owed: 0 };
  private readonly base: number;
  private readonly pages: number;

  constructor(
    private readonly memory: SimMemory,
    private readonly serialLog: string,
    private readonly settings: { dirtyMiB: number; rateMBps: number },
  ) {
    const bytes = Math.min(settings.dirtyMiB * MIB, memory.bytes / 2);
    this.pages = Math.max(1, Math.floor(bytes / PAGE_SIZE));
    this.base = memory.pages * PAGE_SIZE - this.pages * PAGE_SIZE;
  }

  /** Boot: zero the counter and fill the buffer with non-zero bytes, so a migration has to copy it. */
  boot(): void {
    this.memory.write(SIM_LAYOUT.counterGpa, Buffer.alloc(8));
    const fill = Buffer.alloc(PAGE_SIZE, 0x5a);
    for (let i = 0; i < this.pages; i++) this.memory.write(this.base + i * PAGE_SIZE, fill);
    this.console(
      `CCM-GUEST-READY sim dirty_mb=${this.settings.dirtyMiB} dirty_rate=${this.settings.rateMBps}`,
    );
  }

  get running(): boolean {
    return this.timer !== undefined;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), 1000 / SLICES_PER_SEC);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  snapshot(): WorkloadState {
    return { ...this.state };
  }

  restore(state: WorkloadState): void {
    this.state = { ...state };
  }

  private tick(): void {
    const s = this.state;
    const perSlice =
      ((this.settings.rateMBps * MIB) / PAGE_SIZE / SLICES_PER_SEC) * (1 - this.throttle / 100);
    for (s.owed += perSlice; s.owed >= 1; s.owed -= 1) {
      const gpa = this.base + s.cursor * PAGE_SIZE + (s.touched % PAGE_SIZE);
      const byte = this.memory.read(gpa, 1);
      byte[0] = (byte[0] + 1) & 0xff;
      this.memory.write(gpa, byte);
      s.cursor = (s.cursor + 1) % this.pages;
      s.touched++;
    }
    if (++s.slice >= SLICES_PER_SEC) {
      s.slice = 0;
      const counter = this.memory.read(SIM_LAYOUT.counterGpa, 8).readBigUInt64LE() + 1n;
      const next = Buffer.alloc(8);
      next.writeBigUInt64LE(counter);
      this.memory.write(SIM_LAYOUT.counterGpa, next);
      this.console(`COUNTER ${counter} dirtiedMiB=${Math.floor((s.touched * PAGE_SIZE) / MIB)}`);
    }
  }

  console(line: string): void {
    appendFileSync(this.serialLog, `${line}\n`);
  }
}
