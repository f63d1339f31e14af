import { MalformedChunkError } from './errors.js';
import { decodeHeader, frameBytes, HEADER_BYTES, MAX_CHUNK_BYTES } from './format.js';

/**
 * Splits a byte stream (TCP) into whole frames. It judges only what it must to find frame boundaries
 * (magic and a length within the limit); everything else is the opener's job. Bounded: it never holds
 * more than one frame plus one read.
 */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  private frames = 0;

  constructor(private readonly where: { migrationId: string; round: number }) {}

  /** Bytes held that do not yet make a whole frame (non-zero at end of stream means a cut frame). */
  get pending(): number {
    return this.buf.length;
  }

  push(data: Uint8Array): Buffer[] {
    this.buf = this.buf.length === 0 ? Buffer.from(data) : Buffer.concat([this.buf, data]);
    const out: Buffer[] = [];
    while (this.buf.length >= HEADER_BYTES) {
      const h = decodeHeader(this.buf);
      const ref = { ...this.where, expectedSeq: this.frames, ...(h ? { seq: h.seq } : {}) };
      if (!h) throw new MalformedChunkError(ref, 'bad magic');
      if (h.length > MAX_CHUNK_BYTES) throw new MalformedChunkError(ref, `length ${h.length} over the limit`);
      const size = frameBytes(h.length);
      if (this.buf.length < size) break;
      out.push(Buffer.from(this.buf.subarray(0, size)));
      this.buf = this.buf.subarray(size);
      this.frames++;
    }
    return out;
  }
}
