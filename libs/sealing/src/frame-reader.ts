import { ByteQueue } from './byte-queue.js';
import { MalformedChunkError } from './errors.js';
import { decodeHeader, frameBytes, HEADER_BYTES, MAX_CHUNK_BYTES } from './format.js';

/**
 * Splits a byte stream (TCP) into whole frames. It judges only what it must to find frame boundaries
 * (magic and a length within the limit); everything else is the opener's job. Bounded: it never holds
 * more than one frame plus one read.
 */
export class FrameReader {
  /** The bytes held, in the order read (copies of the reads, or what is left of them). */
  private readonly q = new ByteQueue();
  private frames = 0;

  constructor(private readonly where: { migrationId: string; round: number }) {}

  /** Bytes held that do not yet make a whole frame (non-zero at end of stream means a cut frame). */
  get pending(): number {
    return this.q.held;
  }

  /**
   * Takes one read and returns the frames it completes. A read is copied once, as it comes; a frame
   * that spans reads is joined once, when whole (not again with every read that adds to it: a 1 MiB
   * frame arrives in many reads).
   */
  push(data: Uint8Array): Buffer[] {
    if (data.length > 0) this.q.push(Buffer.from(data));
    const out: Buffer[] = [];
    while (this.q.held >= HEADER_BYTES) {
      const h = decodeHeader(this.q.peek(HEADER_BYTES));
      const ref = { ...this.where, expectedSeq: this.frames, ...(h ? { seq: h.seq } : {}) };
      if (!h) throw new MalformedChunkError(ref, 'bad magic');
      if (h.length > MAX_CHUNK_BYTES) throw new MalformedChunkError(ref, `length ${h.length} over the limit`);
      const size = frameBytes(h.length);
      if (this.q.held < size) break;
      out.push(this.q.take(size));
      this.frames++;
    }
    return out;
  }
}
