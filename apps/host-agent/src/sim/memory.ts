/**
 * Guest memory of a simulated VM: real bytes in 4 KiB pages with a dirty log, as KVM's dirty bitmap
 * gives QEMU. What crosses the wire for one page is the memory's business: plain pages (with zero-page
 * detection, as QEMU does) for an ordinary guest, SEND_UPDATE_DATA packets for an SEV guest.
 */

export const PAGE_SIZE = 4096;

/** Layout of the simulated machine's guest-physical memory. */
export const SIM_LAYOUT = {
  /** u64 heartbeat counter of the guest workload (so it migrates with memory). */
  counterGpa: 0x0,
  /** The firmware's secret area: where LAUNCH_SECRET puts the guest owner's secret by default. */
  secretGpa: 0x1000,
  secretBytes: 0x1000,
  /** The SEV hashes table of kernel, initrd and command line (measured direct boot). */
  hashesGpa: 0x2000,
  /** Firmware image. */
  firmwareGpa: 0x10000,
  /** Kernel, then the initrd (page aligned), loaded like a direct boot. */
  kernelGpa: 0x100000,
} as const;

/** One page as it travels in the migration stream. */
export type PagePayload =
  | { kind: 'zero' }
  | { kind: 'raw'; data: Buffer }
  /** An SEV transport packet: 52-byte header and the encrypted page. */
  | { kind: 'sealed'; header: Buffer; data: Buffer };

/** Which pages changed since the last sync. */
export class DirtyLog {
  private bits: Uint8Array;
  private count_ = 0;
  /** Pages marked since the log was created (never reset): the dirty rate comes from its growth. */
  marked = 0;

  constructor(readonly pages: number) {
    this.bits = new Uint8Array(pages);
  }

  mark(gfn: number): void {
    this.marked++;
    if (this.bits[gfn]) return;
    this.bits[gfn] = 1;
    this.count_++;
  }

  markRange(gpa: number, length: number): void {
    const end = Math.ceil((gpa + length) / PAGE_SIZE);
    for (let gfn = Math.floor(gpa / PAGE_SIZE); gfn < end; gfn++) this.mark(gfn);
  }

  get count(): number {
    return this.count_;
  }

  /** The dirty pages, in order, and a clean log (KVM_GET_DIRTY_LOG + clear). */
  sync(): number[] {
    const out: number[] = [];
    for (let gfn = 0; gfn < this.pages; gfn++) if (this.bits[gfn]) out.push(gfn);
    this.bits = new Uint8Array(this.pages);
    this.count_ = 0;
    return out;
  }
}

/** Guest memory as the simulated hypervisor sees and moves it. */
export interface SimMemory {
  readonly bytes: number;
  readonly pages: number;
  readonly dirty: DirtyLog;
  /** The guest's own view (decrypted for an SEV guest); writes mark pages dirty. */
  read(gpa: number, length: number): Buffer;
  write(gpa: number, bytes: Uint8Array): void;
  /** Source side: one page for the stream. */
  exportPage(gfn: number): PagePayload;
  /** Destination side: one page from the stream (an SEV guest checks the packet's MAC; throws if bad). */
  importPage(gfn: number, page: PagePayload): void;
}

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);

/** Memory of an ordinary (unencrypted) guest. */
export class PlainMemory implements SimMemory {
  readonly pages: number;
  readonly dirty: DirtyLog;
  private readonly buf: Buffer;

  constructor(readonly bytes: number) {
    this.pages = Math.ceil(bytes / PAGE_SIZE);
    this.buf = Buffer.alloc(this.pages * PAGE_SIZE);
    this.dirty = new DirtyLog(this.pages);
  }

  read(gpa: number, length: number): Buffer {
    return Buffer.from(this.buf.subarray(gpa, gpa + length));
  }

  write(gpa: number, bytes: Uint8Array): void {
    this.buf.set(bytes, gpa);
    this.dirty.markRange(gpa, bytes.length);
  }

  exportPage(gfn: number): PagePayload {
    const page = this.buf.subarray(gfn * PAGE_SIZE, (gfn + 1) * PAGE_SIZE);
    return page.equals(ZERO_PAGE) ? { kind: 'zero' } : { kind: 'raw', data: Buffer.from(page) };
  }

  importPage(gfn: number, page: PagePayload): void {
    if (page.kind === 'sealed')
      throw new Error(`page ${gfn} is SEV-sealed but this guest is not an SEV guest`);
    const at = gfn * PAGE_SIZE;
    if (page.kind === 'zero') this.buf.fill(0, at, at + PAGE_SIZE);
    else this.buf.set(page.data, at);
  }
}
