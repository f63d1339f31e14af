import { MalformedChunkError } from './errors.js';
import { decodeHeader, frameBytes, HEADER_BYTES, MAX_CHUNK_BYTES } from './format.js';

/**
 * Splits a byte stream (TCP) into whole frames. It judges only what it must to find frame boundaries
 * (magic and a length within the limit); everything else is the opener's job. Bounded: it never holds
 * more than one frame plus one read.
 */
export class FrameReader {
  /** The bytes held, in the order read (copies of the reads, or what is left of them). */
  private parts: Buffer[] = [];
  private held = 0;
  private frames = 0;

  constructor(private readonly where: { migrationId: string; round: number }) {}

  /** Bytes held that do not yet make a whole frame (non-zero at end of stream means a cut frame). */
  get pending(): number {
    return this.held;
  }

  /**
   * Takes one read and returns the frames it completes. A frame is copied once, when whole (not again
   * with every read that adds to it: a 1 MiB frame arrives in many reads).
   */
  push(data: Uint8Array): Buffer[] {
    if (data.length > 0) {
      this.parts.push(Buffer.from(data));
      this.held += data.length;
    }
    const out: Buffer[] = [];
    while (this.held >= HEADER_BYTES) {
      const h = decodeHeader(this.head());
      const ref = { ...this.where, expectedSeq: this.frames, ...(h ? { seq: h.seq } : {}) };
      if (!h) throw new MalformedChunkError(ref, 'bad magic');
      if (h.length > MAX_CHUNK_BYTES) throw new MalformedChunkError(ref, `length ${h.length} over the limit`);
      const size = frameBytes(h.length);
      if (this.held < size) break;
      out.push(this.take(size));
      this.frames++;
    }
    return out;
  }

  /** The first HEADER_BYTES bytes held, in one buffer. */
  private head(): Buffer {
    if (this.parts[0].length < HEADER_BYTES) this.parts = [Buffer.concat(this.parts, this.held)];
    return this.parts[0].subarray(0, HEADER_BYTES);
  }

  /** The first `n` bytes held, removed, as a buffer of their own. */
  private take(n: number): Buffer {
    const pieces: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const p = this.parts[0];
      if (p.length <= need) {
        pieces.push(p);
        this.parts.shift();
        need -= p.length;
      } else {
        pieces.push(p.subarray(0, need));
        this.parts[0] = p.subarray(need);
        need = 0;
      }
    }
    this.held -= n;
    return Buffer.concat(pieces, n);
  }
}
