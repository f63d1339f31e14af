import { createServer, type Server, type Socket } from 'node:net';
import { type SimMemory } from './memory.js';
import { MigrationStats, type SimMigrationStatus } from './migration-stats.js';
import { decodePage, encodeFrame, FrameReader, FrameType, jsonFrame, parseJson, type Frame } from './wire.js';
import { type WorkloadState } from './workload.js';

/** How long a refusing destination keeps a refused stream open for the source to read the NACK. */
const NACK_LINGER_MS = 2_000;

/** What the destination VM lends an incoming migration. */
export interface MigrationDestination {
  readonly memory: SimMemory;
  readonly specHash: string;
  emit(event: string, data?: Record<string, unknown>): void;
  /** Whether `postcopy-ram` is on here: a source that advises post-copy needs it. */
  postcopyRam(): boolean;
  /** RECEIVE_START with what the source's SEND_START put in HELLO. */
  receiveStart?(sev: Record<string, unknown>): void;
  /** Everything arrived: restore the CPU state and run (or stay paused). */
  completed(workload: WorkloadState, running: boolean): void;
  /** The stream failed: QEMU's destination exits, and so does this one. */
  failed(reason: string): void;
}

/**
 * The destination of a simulated migration: listens once (`migrate-incoming tcp:HOST:0` reports the
 * port it got), checks HELLO against its own memory size and spec, applies pages (an SEV guest opens
 * each packet with RECEIVE_UPDATE_DATA, so a tampered page fails its MAC), and at END acknowledges on
 * the return path and runs the guest. Any bad frame refuses the stream with the reason (NACK).
 */
export class IncomingMigration {
  readonly stats: MigrationStats;
  private server?: Server;
  private done = false;
  private device?: { workload: WorkloadState; running: boolean };

  constructor(
    private readonly vm: MigrationDestination,
    private readonly events: () => boolean,
  ) {
    this.stats = new MigrationStats(vm.memory.bytes);
  }

  get status(): SimMigrationStatus {
    return this.stats.status;
  }

  /** Listens on `host:port` (0: any free port); resolves with the port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const server = createServer((sock) => {
        server.close(); // one stream per destination, as QEMU
        this.accept(sock);
      });
      this.server = server;
      server.once('error', reject);
      server.listen(port, host, () => {
        this.setStatus('setup');
        resolve((server.address() as { port: number }).port);
      });
    });
  }

  private setStatus(status: SimMigrationStatus): void {
    this.stats.status = status;
    if (this.events()) this.vm.emit('MIGRATION', { status });
  }

  private accept(sock: Socket): void {
    this.setStatus('active');
    const reader = new FrameReader();
    let hello = false;
    const refuse = (reason: string): void => {
      if (this.done) return;
      // The VM process exits when the load fails. Exiting with the source's pages still unread would
      // reset the connection, and the source would see a broken pipe before it reads why: so go on
      // reading (and dropping) until the source closes after the NACK, or NACK_LINGER_MS.
      sock.end(jsonFrame(FrameType.Nack, { error: reason }));
      const linger = setTimeout(() => sock.destroy(), NACK_LINGER_MS);
      sock.once('close', () => clearTimeout(linger));
      this.fail(reason, sock);
    };
    sock.on('data', (chunk: Buffer) => {
      if (this.done) return;
      try {
        for (const f of reader.push(chunk)) {
          if (!hello && f.type !== FrameType.Hello)
            throw new Error(`stream starts with frame type ${f.type}, not HELLO`);
          hello = true;
          if (this.apply(f)) {
            sock.end(encodeFrame(FrameType.Ack));
            return;
          }
        }
      } catch (err) {
        refuse((err as Error).message);
      }
    });
    sock.on('close', () => {
      if (!this.done) this.fail('the source closed the stream (Input/output error)');
    });
    sock.on('error', () => undefined);
  }

  /** Applies one frame; true at END. */
  private apply(f: Frame): boolean {
    switch (f.type) {
      case FrameType.Hello: {
        const h = parseJson<{
          memoryBytes: number;
          specHash: string;
          postcopy?: boolean;
          sev?: Record<string, unknown>;
        }>(f);
        // As QEMU's POSTCOPY_ADVISE: a source with postcopy-ram needs it on the destination too.
        if (h.postcopy && !this.vm.postcopyRam()) {
          throw new Error('the source advises post-copy but postcopy-ram is off on this destination');
        }
        if (h.memoryBytes !== this.vm.memory.bytes) {
          throw new Error(
            `the source has ${h.memoryBytes} bytes of RAM, this destination ${this.vm.memory.bytes}`,
          );
        }
        if (h.specHash !== this.vm.specHash) throw new Error('the source was started with another VM spec');
        if (!!h.sev !== !!this.vm.receiveStart) {
          throw new Error(
            h.sev
              ? 'the stream is SEV-sealed but this destination is not an SEV guest'
              : 'this SEV destination got a plain stream',
          );
        }
        if (h.sev) this.vm.receiveStart!(h.sev);
        return false;
      }
      case FrameType.Page: {
        const { gfn, page } = decodePage(f.payload);
        if (gfn >= this.vm.memory.pages) throw new Error(`page ${gfn} is beyond guest memory`);
        this.vm.memory.importPage(gfn, page);
        this.stats.transferred += f.payload.length + 5;
        return false;
      }
      case FrameType.Sync:
        this.stats.dirtySyncCount++;
        return false;
      case FrameType.Device: {
        const d = parseJson<{ workload: WorkloadState; running: boolean }>(f);
        this.device = d;
        return false;
      }
      case FrameType.End: {
        if (!this.device) throw new Error('END before DEVICE state');
        this.done = true;
        this.stats.totalTime = Date.now() - this.stats.startedAt;
        this.setStatus('completed');
        this.vm.completed(this.device.workload, this.device.running);
        return true;
      }
      default:
        throw new Error(`unexpected frame type ${f.type} from the source`);
    }
  }

  /** Fails the load; the VM is told once `lingering` (the refused stream, if any) has closed. */
  private fail(reason: string, lingering?: Socket): void {
    if (this.done) return;
    this.done = true;
    this.stats.errorDesc = reason;
    this.server?.close();
    this.setStatus('failed');
    if (lingering && !lingering.destroyed) lingering.once('close', () => this.vm.failed(reason));
    else this.vm.failed(reason);
  }
}
