import { createCipheriv, randomBytes } from 'node:crypto';
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
    if (chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES) throw new RangeError('bad chunk size');
    if (data.length === 0) {
      yield this.seal(data, true);
      return;
    }
    for (let off = 0; off < data.length; off += chunkBytes) {
      const end = Math.min(off + chunkBytes, data.length);
      yield this.seal(data.subarray(off, end), end === data.length);
    }
  }
}
