import { connect, type Socket } from 'node:net';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { PAGE_SIZE, type SimMemory } from './memory.js';
import { MigrationStats, type SimMigrationSettings, type SimMigrationStatus } from './migration-stats.js';
import { encodeFrame, encodePage, FrameReader, FrameType, jsonFrame, parseJson } from './wire.js';
import { type WorkloadState } from './workload.js';

/** What the source VM lends an outgoing migration. */
export interface MigrationSource {
  readonly memory: SimMemory;
  readonly specHash: string;
  emit(event: string, data?: Record<string, unknown>): void;
  /** Stops the guest for the final copy; true if it was running. */
  stopForMigration(): boolean;
  /** The guest CPU state for DEVICE (taken while stopped). */
  deviceState(): WorkloadState;
  /** Restarts the guest after a failed or cancelled migration (if it was running before). */
  resumeAfterMigration(wasRunning: boolean): void;
  /** The guest now lives on the destination. */
  completed(): void;
  setThrottle(percent: number): void;
  /** SEND_START with the target chain: what HELLO carries for RECEIVE_START. */
  sendStart?(target: NonNullable<SimMigrationSettings['sev']>): Record<string, unknown>;
  /** SEND_FINISH after a completed migration, SEND_CANCEL after a failed one. */
  sendEnd?(completed: boolean): void;
}

/** Pages per socket write. */
const BATCH_PAGES = 32;
/** Bandwidth is enforced in windows of this length (QEMU's rate limiter uses 100 ms too). */
const WINDOW_MS = 100;
const CONNECT_TIMEOUT_MS = 10_000;

class Cancelled extends Error {}

/**
 * Pre-copy live migration of a simulated VM over TCP: a first pass over all memory, then passes over
 * the pages dirtied meanwhile, until the dirty set fits the downtime budget at the measured bandwidth;
 * then the guest stops (STOP), optionally waits in pre-switchover for `migrate-continue`, sends the
 * last pages and its CPU state, and completes once the destination acknowledges. Fails and resumes the
 * guest if the destination refuses or goes away; auto-converge throttles the guest when it dirties
 * memory faster than half the rate it is sent.
 */
export class OutgoingMigration {
  readonly stats: MigrationStats;
  private sock?: Socket;
  private cancelled = false;
  /** `migrate-start-postcopy` was accepted: the current pass ends and the switch begins. */
  private postcopyRequested = false;
  /** The destination was let run in post-copy: the source can never resume. */
  private postcopyActive = false;
  private continueGate?: () => void;
  private peerVerdict?: Promise<string | undefined>;
  /** Why the link broke, when the destination said so on the return path. */
  private linkError?: string;

  constructor(
    private readonly vm: MigrationSource,
    private readonly uri: string,
    private readonly settings: SimMigrationSettings,
  ) {
    this.stats = new MigrationStats(vm.memory.bytes);
  }

  get status(): SimMigrationStatus {
    return this.stats.status;
  }

  cancel(): void {
    if (this.cancelled || ['completed', 'failed', 'cancelled'].includes(this.stats.status)) return;
    this.cancelled = true;
    this.setStatus('cancelling');
    this.continueGate?.();
    this.sock?.destroy();
  }

  /**
   * `migrate-start-postcopy`: accepted (true) while pre-copy runs with `postcopy-ram` on. As QEMU
   * refuses it without the capability, the caller turns false into an error.
   */
  startPostcopy(): boolean {
    if (!this.settings.postcopyRam) return false;
    if (this.stats.status !== 'setup' && this.stats.status !== 'active') return this.postcopyRequested;
    this.postcopyRequested = true;
    return true;
  }

  /** `migrate-continue` in pre-switchover. */
  resumeSwitchover(): boolean {
    if (this.stats.status !== 'pre-switchover' || !this.continueGate) return false;
    this.continueGate();
    return true;
  }

  async run(): Promise<void> {
    let stoppedRunning: boolean | undefined;
    try {
      this.setStatus('setup');
      await this.connect();
      const hello: Record<string, unknown> = {
        version: 1,
        memoryBytes: this.vm.memory.bytes,
        specHash: this.vm.specHash,
        ...(this.settings.postcopyRam ? { postcopy: true } : {}),
      };
      if (this.settings.sev) {
        if (!this.vm.sendStart)
          throw new Error('SEV transport parameters given but the guest is not an SEV guest');
        hello['sev'] = this.vm.sendStart(this.settings.sev);
      } else if (this.vm.sendStart) {
        throw new Error(
          'an SEV guest needs the target chain (migrate-set-parameters sev-pdh, sev-plat-cert, sev-amd-cert)',
        );
      }
      await this.write(jsonFrame(FrameType.Hello, hello));
      this.stats.setupTime = Date.now() - this.stats.startedAt;
      this.setStatus('active');
      this.sync(); // start tracking from here; the first pass sends everything
      let pages = Array.from({ length: this.vm.memory.pages }, (_, i) => i);
      for (;;) {
        const passStart = Date.now();
        const markedBefore = this.vm.memory.dirty.marked;
        const bytes = await this.sendPages(pages);
        await this.write(encodeFrame(FrameType.Sync));
        const seconds = Math.max(Date.now() - passStart, 1) / 1000;
        pages = this.sync();
        this.stats.remainingPages = pages.length;
        this.stats.dirtyPagesRate = (this.vm.memory.dirty.marked - markedBefore) / seconds;
        const bytesPerMs = Math.min(bytes / seconds, this.settings.maxBandwidth) / 1000;
        this.stats.mbps = (bytes * 8) / seconds / 1e6;
        this.stats.expectedDowntime = (pages.length * PAGE_SIZE) / Math.max(bytesPerMs, 1);
        if (this.stats.expectedDowntime <= this.settings.downtimeLimitMs || this.postcopyRequested) break;
        if (this.settings.autoConverge && this.stats.dirtySyncCount >= 2)
          this.throttle(pages.length * PAGE_SIZE, bytes);
      }
      const stopAt = Date.now();
      stoppedRunning = this.vm.stopForMigration();
      if (this.settings.pauseBeforeSwitchover) {
        this.setStatus('pre-switchover');
        await new Promise<void>((r) => (this.continueGate = r));
        this.continueGate = undefined;
        this.checkCancelled();
      }
      // Post-copy: the destination runs from here and pulls what it lacks (the sim sends it all, at
      // full speed: QEMU ignores max-bandwidth in post-copy); the source can never resume after this.
      this.postcopyActive = this.postcopyRequested;
      this.setStatus(this.postcopyActive ? 'postcopy-active' : 'device');
      await this.sendPages([...new Set([...pages, ...this.sync()])].sort((a, b) => a - b));
      await this.write(
        jsonFrame(FrameType.Device, { workload: this.vm.deviceState(), running: stoppedRunning }),
      );
      await this.write(encodeFrame(FrameType.End));
      const refusal = await this.peerVerdict!;
      if (refusal !== undefined) throw new Error(refusal);
      this.stats.downtime = Date.now() - stopAt;
      this.stats.totalTime = Date.now() - this.stats.startedAt;
      this.stats.remainingPages = 0;
      this.vm.sendEnd?.(true);
      this.setStatus('completed');
      this.vm.completed();
    } catch (err) {
      const cancelled = this.cancelled;
      this.stats.errorDesc = cancelled ? undefined : (err as Error).message;
      this.vm.setThrottle(0);
      try {
        this.vm.sendEnd?.(false);
      } catch {
        // SEND_CANCEL refused: the context was not sending; nothing to undo
      }
      if (this.postcopyActive) {
        // As QEMU: a broken post-copy stream pauses (for a recovery) and the source stays stopped.
        this.stats.errorDesc ??= 'post-copy stream cancelled';
        this.setStatus('postcopy-paused');
        return;
      }
      if (stoppedRunning !== undefined || cancelled) this.vm.resumeAfterMigration(stoppedRunning ?? false);
      this.setStatus(cancelled ? 'cancelled' : 'failed');
    } finally {
      this.sock?.destroy();
    }
  }

  /** A dirty-log sync: the next pass starts (QEMU's dirty-sync-count and MIGRATION_PASS). */
  private sync(): number[] {
    const pages = this.vm.memory.dirty.sync();
    this.stats.dirtySyncCount++;
    this.vm.emit('MIGRATION_PASS', { pass: this.stats.dirtySyncCount });
    return pages;
  }

  private throttle(dirtyBytes: number, sentBytes: number): void {
    // QEMU's trigger: the guest dirtied more than half of what the pass sent.
    if (dirtyBytes <= sentBytes / 2) return;
    const next = Math.min(99, this.stats.throttle ? this.stats.throttle + 10 : 20);
    this.stats.throttle = next;
    this.vm.setThrottle(next);
  }

  private setStatus(status: SimMigrationStatus): void {
    this.stats.status = status;
    if (this.settings.events) this.vm.emit('MIGRATION', { status });
  }

  private checkCancelled(): void {
    if (this.cancelled) throw new Cancelled('cancelled');
  }

  private connect(): Promise<Socket> {
    const m = /^tcp:(.+):(\d+)$/.exec(this.uri);
    if (!m) return Promise.reject(new Error(`unsupported migration URI ${this.uri}`));
    return new Promise((resolve, reject) => {
      const sock = connect({ host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) });
      this.sock = sock;
      const timer = setTimeout(
        () => sock.destroy(new Error(`connect to ${this.uri} timed out`)),
        CONNECT_TIMEOUT_MS,
      );
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.setNoDelay(true);
        this.peerVerdict = this.readVerdict(sock);
        resolve(sock);
      });
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`Failed to connect to ${this.uri}: ${err.message}`));
      });
    });
  }

  /** The return path: undefined on ACK, the reason on NACK or when the destination goes away first. */
  private readVerdict(sock: Socket): Promise<string | undefined> {
    return new Promise((resolve) => {
      const reader = new FrameReader();
      sock.on('data', (chunk: Buffer) => {
        for (const f of reader.push(chunk)) {
          if (f.type === FrameType.Ack) resolve(undefined);
          if (f.type === FrameType.Nack) {
            const why = parseJson<{ error: string }>(f).error;
            resolve(`the destination refused the stream: ${why}`);
            this.failLink(`the destination refused the stream: ${why}`);
          }
        }
      });
      sock.on('close', () => resolve('the destination closed the connection before acknowledging'));
      sock.on('error', () => undefined);
    });
  }

  private failLink(reason: string): void {
    this.linkError ??= reason;
    this.sock?.destroy();
  }

  private async sendPages(pages: readonly number[]): Promise<number> {
    let bytes = 0;
    let windowStart = Date.now();
    let windowBytes = 0;
    const windowBudget = this.postcopyActive ? Infinity : (this.settings.maxBandwidth * WINDOW_MS) / 1000;
    for (let i = 0; i < pages.length; i += BATCH_PAGES) {
      this.checkCancelled();
      if (this.postcopyRequested && !this.postcopyActive) break; // the pass ends: switch to post-copy
      const frames: Buffer[] = [];
      for (const gfn of pages.slice(i, i + BATCH_PAGES)) {
        const payload = this.vm.memory.exportPage(gfn);
        if (payload.kind === 'zero') this.stats.duplicate++;
        else this.stats.normal++;
        frames.push(encodePage(gfn, payload));
      }
      const chunk = Buffer.concat(frames);
      await this.write(chunk);
      bytes += chunk.length;
      windowBytes += chunk.length;
      this.stats.transferred += chunk.length;
      this.stats.remainingPages = Math.max(0, pages.length - i - BATCH_PAGES);
      if (windowBytes >= windowBudget) {
        const wait = windowStart + WINDOW_MS - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        windowStart = Date.now();
        windowBytes = 0;
      } else {
        await yieldToLoop();
      }
    }
    return bytes;
  }

  private async write(buf: Buffer): Promise<void> {
    this.checkCancelled();
    const sock = this.sock!;
    if (this.linkError) throw new Error(this.linkError);
    if (sock.destroyed) throw new Error('Unable to write to socket: the connection is closed');
    if (!sock.write(buf)) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => (cleanup(), resolve());
        const onClose = (): void => (
          cleanup(),
          reject(new Error(this.linkError ?? 'Unable to write to socket: Broken pipe'))
        );
        const cleanup = (): void => {
          sock.off('drain', onDrain);
          sock.off('close', onClose);
        };
        sock.once('drain', onDrain);
        sock.once('close', onClose);
      });
    }
    this.checkCancelled();
  }
}
