/**
 * Bytes held as the pieces they came in, taken from the front `n` at a time: the sealer's chunker
 * (plaintext read in pieces) and the frame reader (frames arriving in TCP reads) both cut a stream
 * this way. A piece is kept, not copied; a caller that may reuse a piece's memory pushes a copy.
 */
export class ByteQueue {
  private parts: Buffer[] = [];
  private count = 0;

  /** Bytes held. */
  get held(): number {
    return this.count;
  }

  push(piece: Buffer): void {
    if (piece.length === 0) return;
    this.parts.push(piece);
    this.count += piece.length;
  }

  /** The first `n` bytes held (at most {@link held}) in one buffer, left held. */
  peek(n: number): Buffer {
    if (this.parts[0].length < n) this.parts = [Buffer.concat(this.parts, this.count)];
    return this.parts[0].subarray(0, n);
  }

  /**
   * The first `n` bytes held (at most {@link held}), removed: a view of the first piece when it holds
   * them all, else the pieces joined into a buffer of their own.
   */
  take(n: number): Buffer {
    this.count -= n;
    const first = this.parts[0];
    if (first.length >= n) {
      if (first.length === n) this.parts.shift();
      else this.parts[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const pieces: Buffer[] = [];
    for (let need = n; need > 0;) {
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
    return Buffer.concat(pieces, n);
  }
}
