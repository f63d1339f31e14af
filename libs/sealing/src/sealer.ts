import { createCipheriv, randomBytes } from 'node:crypto';
import { ByteQueue } from './byte-queue.js';
import {
  checkBinding,
  DEFAULT_CHUNK_BYTES,
  encodeHeader,
  FLAG_LAST,
  MAX_CHUNK_BYTES,
  MAX_SEQ,
  nonceFor,
  STREAM_ID_BYTES,
  type StreamBinding,
  TAG_BYTES,
} from './format.js';
import { deriveStreamKey } from './stream-key.js';

/**
 * Seals one stream's chunks in order. The stream id is random per sealer, so two sealers never share a
 * (key, nonce) pair even for the same migration and round; `seal` refuses anything after the last chunk.
 */
export class StreamSealer {
  readonly streamId: Buffer;
  private readonly key: Buffer;
  private readonly aadSuffix: Buffer;
  private nextSeq = 0;
  private ended = false;

  constructor(
    migrationKey: Uint8Array,
    private readonly binding: StreamBinding,
    random: (n: number) => Buffer = randomBytes,
  ) {
    checkBinding(binding);
    this.streamId = random(STREAM_ID_BYTES);
    this.key = deriveStreamKey(migrationKey, binding, this.streamId);
    this.aadSuffix = Buffer.from(binding.migrationId, 'utf8');
  }

  /** Chunks sealed so far. */
  get chunks(): number {
    return this.nextSeq;
  }
  get done(): boolean {
    return this.ended;
  }

  /** One frame carrying `plaintext` (at most MAX_CHUNK_BYTES); `last` ends the stream. */
  seal(plaintext: Uint8Array, last = false): Buffer {
    if (this.ended) throw new Error('the stream already sent its last chunk');
    if (plaintext.length > MAX_CHUNK_BYTES)
      throw new RangeError(`a chunk carries at most ${MAX_CHUNK_BYTES} bytes`);
    if (this.nextSeq > MAX_SEQ) throw new RangeError('the stream is out of sequence numbers');
    const seq = this.nextSeq++;
    const header = encodeHeader({
      flags: last ? FLAG_LAST : 0,
      round: this.binding.round,
      seq,
      length: plaintext.length,
      streamId: this.streamId,
    });
    const cipher = createCipheriv('aes-256-gcm', this.key, nonceFor(seq), { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.concat([header, this.aadSuffix]));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    if (last) this.ended = true;
    return Buffer.concat([header, body, cipher.getAuthTag()]);
  }

  /** Seals a whole buffer as consecutive chunks of `chunkBytes`, the last one flagged (one empty chunk for no data). */
  *sealAll(data: Uint8Array, chunkBytes = DEFAULT_CHUNK_BYTES): Generator<Buffer> {
    const c = this.chunker(chunkBytes);
    yield* c.push(data);
    yield* c.end();
  }

  /**
   * Seals data handed over in pieces (as it is read) as consecutive chunks of `chunkBytes`: the same
   * frames {@link sealAll} gives for the pieces joined. A chunk is sealed as soon as a byte beyond it
   * arrived (so the last one, at `end`, is known to be last); the pieces are kept, not copied, until
   * sealed, so a caller must not reuse a piece's memory.
   */
  chunker(chunkBytes = DEFAULT_CHUNK_BYTES): StreamChunker {
    if (chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES) throw new RangeError('bad chunk size');
    const q = new ByteQueue();
    return {
      push: (piece) => {
        q.push(Buffer.from(piece.buffer, piece.byteOffset, piece.length));
        const out: Buffer[] = [];
        while (q.held > chunkBytes) out.push(this.seal(q.take(chunkBytes)));
        return out;
      },
      end: () => [this.seal(q.held > 0 ? q.take(q.held) : Buffer.alloc(0), true)],
    };
  }
}

/** A sealer's chunking of data that comes in pieces ({@link StreamSealer.chunker}). */
export interface StreamChunker {
  /** Adds a piece: the frames of the chunks it completed (none while the chunk fills). */
  push(piece: Uint8Array): Buffer[];
  /** The stream's data is all there: the last frame (flagged last). */
  end(): Buffer[];
}
