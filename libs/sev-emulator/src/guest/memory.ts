import { MEMORY_BLOCK_SIZE, type MemoryEncryptionKey } from './memory-cipher.js';

/** Guest page size. */
export const PAGE_SIZE = 4096;
/** 16-byte blocks per page: the granule of the private/shared flags. */
export const BLOCKS_PER_PAGE = PAGE_SIZE / MEMORY_BLOCK_SIZE;

/** One touched page as a guest context export holds it (plaintext of private blocks, flags per block). */
export interface GuestPageImage {
  readonly index: number;
  readonly data: Buffer;
  readonly priv: Uint8Array;
}
/** Pages per backing allocation. */
const SLAB_PAGES = 256;

interface Page {
  /** Plaintext for private blocks, the physical bytes for shared blocks. */
  readonly data: Buffer;
  /** 1 where the block is private (encrypted with the VEK), 0 where it is shared. */
  readonly priv: Uint8Array;
  privCount: number;
}

const floorBlock = (a: number): number => a - (a % MEMORY_BLOCK_SIZE);
const ceilBlock = (a: number): number => floorBlock(a + MEMORY_BLOCK_SIZE - 1);

/**
 * A guest's physical memory: sparse 4 KiB pages of real bytes, each 16-byte block either private
 * (encrypted with the guest's VEK, held here as plaintext) or shared (held as the bytes the host wrote).
 * Two views, as on hardware:
 *
 * - the **physical** view (host, or the guest with the C-bit clear): shared blocks as written, private
 *   blocks as VEK ciphertext — the hypervisor never sees guest plaintext;
 * - the **private** view (the guest with the C-bit set, and the firmware on the guest's behalf):
 *   private blocks as plaintext, shared blocks as the garbage a C-bit read of unencrypted bytes gives.
 *
 * A write in one view makes the block belong to that view, so a host write into private memory garbles
 * the block for the guest (SEV has no integrity protection; SNP's RMP is not modelled). Pages never
 * written read as physical zeros.
 */
export class GuestMemory {
  readonly #pages = new Map<number, Page>();
  /** Zeroed backing store handed out a page at a time (one allocation per 256 pages touched). */
  #slab = Buffer.alloc(0);
  #slabUsed = 0;

  constructor(
    /** Size in bytes (a multiple of 4 KiB). */
    readonly size: number,
    private readonly vek: MemoryEncryptionKey,
  ) {}

  /** True when [gpa, gpa + length) lies inside the guest. */
  contains(gpa: number, length: number): boolean {
    return (
      Number.isSafeInteger(gpa) &&
      Number.isSafeInteger(length) &&
      gpa >= 0 &&
      length >= 0 &&
      gpa + length <= this.size
    );
  }

  /** Physical view of any range. */
  readPhysical(gpa: number, length: number): Buffer {
    const a0 = floorBlock(gpa);
    return this.#physical(a0, ceilBlock(gpa + length) - a0).subarray(gpa - a0, gpa - a0 + length);
  }

  /** Physical write (host, or guest with the C-bit clear): the blocks become shared. */
  writePhysical(gpa: number, bytes: Uint8Array): void {
    const a0 = floorBlock(gpa);
    const a1 = ceilBlock(gpa + bytes.length);
    if (a0 === gpa && a1 === gpa + bytes.length) return this.#store(a0, bytes, 0);
    const buf = this.#physical(a0, a1 - a0);
    buf.set(bytes, gpa - a0);
    this.#store(a0, buf, 0);
  }

  /** Private view of any range (what the guest reads with the C-bit set). */
  readPrivate(gpa: number, length: number): Buffer {
    const a0 = floorBlock(gpa);
    return this.#private(a0, ceilBlock(gpa + length) - a0).subarray(gpa - a0, gpa - a0 + length);
  }

  /** Private write (guest with the C-bit set, or the firmware for it): the blocks become private. */
  writePrivate(gpa: number, bytes: Uint8Array): void {
    const a0 = floorBlock(gpa);
    const a1 = ceilBlock(gpa + bytes.length);
    if (a0 === gpa && a1 === gpa + bytes.length) return this.#store(a0, bytes, 1);
    const buf = this.#private(a0, a1 - a0);
    buf.set(bytes, gpa - a0);
    this.#store(a0, buf, 1);
  }

  /**
   * LAUNCH_UPDATE_DATA / SNP_LAUNCH_UPDATE: encrypts a block-aligned range in place and returns the bytes
   * that were there (what the firmware measures). Already-private blocks are encrypted a second time, as
   * on hardware, so the guest then reads their ciphertext.
   */
  encryptInPlace(gpa: number, length: number): Buffer {
    const bytes = this.#physical(gpa, length);
    this.#store(gpa, bytes, 1);
    return bytes;
  }

  /** True when every block of [gpa, gpa + length) is private. */
  isPrivate(gpa: number, length: number): boolean {
    const a0 = floorBlock(gpa);
    const a1 = ceilBlock(gpa + length);
    for (let a = a0; a < a1; a += MEMORY_BLOCK_SIZE) {
      const page = this.#pages.get(Math.floor(a / PAGE_SIZE));
      if (!page || page.priv[(a % PAGE_SIZE) / MEMORY_BLOCK_SIZE] === 0) return false;
    }
    return true;
  }

  /** Every page ever written, in address order (for a context export; the buffers are live views). */
  *touchedPages(): Generator<GuestPageImage> {
    for (const index of [...this.#pages.keys()].sort((a, b) => a - b)) {
      const page = this.#pages.get(index) as Page;
      yield { index, data: page.data, priv: page.priv };
    }
  }

  /** Puts back one page of an imported context (the page must not exist yet). */
  restorePage(image: GuestPageImage): void {
    if (image.index < 0 || (image.index + 1) * PAGE_SIZE > this.size || this.#pages.has(image.index)) {
      throw new RangeError(`page ${image.index} is outside the guest or given twice`);
    }
    if (image.data.length !== PAGE_SIZE || image.priv.length !== BLOCKS_PER_PAGE) {
      throw new RangeError(`page ${image.index} has the wrong size`);
    }
    let privCount = 0;
    for (const flag of image.priv) {
      if (flag > 1) throw new RangeError(`page ${image.index} has a bad block flag`);
      privCount += flag;
    }
    const data = this.#newPage();
    data.set(image.data);
    this.#pages.set(image.index, { data, priv: Uint8Array.from(image.priv), privCount });
  }

  /** Splits a block-aligned range at page boundaries. */
  *#segments(
    addr: number,
    length: number,
  ): Generator<[page: number, offset: number, size: number, at: number]> {
    for (let at = 0; at < length;) {
      const a = addr + at;
      const offset = a % PAGE_SIZE;
      const size = Math.min(PAGE_SIZE - offset, length - at);
      yield [Math.floor(a / PAGE_SIZE), offset, size, at];
      at += size;
    }
  }

  /** Calls `fn` for each run of blocks that are all private or all shared within one page segment. */
  #runs(
    page: Page | undefined,
    offset: number,
    size: number,
    fn: (off: number, n: number, priv: boolean) => void,
  ): void {
    const first = offset / MEMORY_BLOCK_SIZE;
    const last = (offset + size) / MEMORY_BLOCK_SIZE;
    const flag = (b: number): boolean => page !== undefined && page.priv[b] === 1;
    let start = first;
    for (let b = first + 1; b <= last; b++) {
      if (b === last || flag(b) !== flag(start)) {
        fn(start * MEMORY_BLOCK_SIZE, (b - start) * MEMORY_BLOCK_SIZE, flag(start));
        start = b;
      }
    }
  }

  #physical(addr: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    for (const [n, offset, size, at] of this.#segments(addr, length)) {
      const page = this.#pages.get(n);
      if (!page) continue; // never written: physical zeros
      if (page.privCount === 0) {
        page.data.copy(out, at, offset, offset + size);
        continue;
      }
      this.#runs(page, offset, size, (off, len, priv) => {
        const src = page.data.subarray(off, off + len);
        const dst = at + off - offset;
        if (priv) this.vek.encrypt(n * PAGE_SIZE + off, src).copy(out, dst);
        else src.copy(out, dst);
      });
    }
    return out;
  }

  #private(addr: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length); // every byte is written below: runs cover each segment
    for (const [n, offset, size, at] of this.#segments(addr, length)) {
      const page = this.#pages.get(n);
      if (page?.privCount === BLOCKS_PER_PAGE) {
        page.data.copy(out, at, offset, offset + size);
        continue;
      }
      const data = page?.data ?? Buffer.alloc(PAGE_SIZE);
      this.#runs(page, offset, size, (off, len, priv) => {
        const src = data.subarray(off, off + len);
        const dst = at + off - offset;
        if (priv) src.copy(out, dst);
        else this.vek.decrypt(n * PAGE_SIZE + off, src).copy(out, dst);
      });
    }
    return out;
  }

  #newPage(): Buffer {
    if (this.#slabUsed === this.#slab.length) {
      this.#slab = Buffer.alloc(Math.min(SLAB_PAGES * PAGE_SIZE, this.size));
      this.#slabUsed = 0;
    }
    this.#slabUsed += PAGE_SIZE;
    return this.#slab.subarray(this.#slabUsed - PAGE_SIZE, this.#slabUsed);
  }

  /** Stores a block-aligned range as plaintext (`priv` 1) or physical bytes (`priv` 0). */
  #store(addr: number, bytes: Uint8Array, priv: 0 | 1): void {
    for (const [n, offset, size, at] of this.#segments(addr, bytes.length)) {
      let page = this.#pages.get(n);
      if (!page) {
        page = { data: this.#newPage(), priv: new Uint8Array(BLOCKS_PER_PAGE), privCount: 0 };
        this.#pages.set(n, page);
      }
      page.data.set(at === 0 && size === bytes.length ? bytes : bytes.subarray(at, at + size), offset);
      if (size === PAGE_SIZE) {
        page.priv.fill(priv);
        page.privCount = priv * BLOCKS_PER_PAGE;
        continue;
      }
      for (let b = offset / MEMORY_BLOCK_SIZE; b < (offset + size) / MEMORY_BLOCK_SIZE; b++) {
        page.privCount += priv - page.priv[b];
        page.priv[b] = priv;
      }
    }
  }
}
