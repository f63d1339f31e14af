import { createDecipheriv } from 'node:crypto';
import {
  ChunkAfterEndError,
  ChunkAuthenticationError,
  ChunkForeignStreamError,
  type ChunkRef,
  ChunkOutOfOrderError,
  ChunkReplayedError,
  ChunkWrongRoundError,
  MalformedChunkError,
  type SealingError,
  StreamFailedError,
  StreamTruncatedError,
} from './errors.js';
import {
  checkBinding,
  decodeHeader,
  FLAG_LAST,
  frameBytes,
  HEADER_BYTES,
  MAX_CHUNK_BYTES,
  nonceFor,
  type StreamBinding,
  TAG_BYTES,
  VERSION,
} from './format.js';
import { deriveStreamKey } from './stream-key.js';

/** A chunk the opener accepted. */
export interface OpenedChunk {
  readonly seq: number;
  readonly last: boolean;
  readonly plaintext: Buffer;
}

/**
 * Opens one stream's frames strictly in order and refuses, with an error naming the chunk, anything
 * altered (authentication), dropped or reordered (a gap), replayed (a seq already accepted), from another
 * round or stream, after the last chunk, or missing at the end ({@link finish}). The first refusal ends
 * the stream: every later call throws {@link StreamFailedError}, so nothing after a bad chunk is used.
 */
export class StreamOpener {
  private readonly migrationKey: Buffer;
  private key: Buffer | undefined;
  private streamId: Buffer | undefined;
  private expectedSeq = 0;
  private ended = false;
  private failure: SealingError | undefined;
  private bytes = 0;

  constructor(
    migrationKey: Uint8Array,
    private readonly binding: StreamBinding,
  ) {
    checkBinding(binding);
    this.migrationKey = Buffer.from(migrationKey);
  }

  /** Whether the last chunk has been accepted. */
  get done(): boolean {
    return this.ended;
  }
  /** Chunks accepted so far. */
  get chunks(): number {
    return this.expectedSeq;
  }
  /** Plaintext bytes accepted so far. */
  get plaintextBytes(): number {
    return this.bytes;
  }
  /** The first refusal, if any. */
  get failed(): SealingError | undefined {
    return this.failure;
  }

  open(frame: Uint8Array): OpenedChunk {
    if (this.failure) throw new StreamFailedError(this.failure);
    try {
      return this.accept(frame);
    } catch (e) {
      this.failure = e as SealingError;
      throw e;
    }
  }

  /** The sender says the stream is over (or the connection closed): refused unless the last chunk came. */
  finish(reason = 'the connection closed'): void {
    if (this.failure) throw new StreamFailedError(this.failure);
    if (!this.ended) {
      this.failure = new StreamTruncatedError(this.ref(), reason);
      throw this.failure;
    }
  }

  private ref(seq?: number): ChunkRef {
    return {
      migrationId: this.binding.migrationId,
      round: this.binding.round,
      expectedSeq: this.expectedSeq,
      ...(seq === undefined ? {} : { seq }),
    };
  }

  private accept(frame: Uint8Array): OpenedChunk {
    const h = decodeHeader(frame);
    if (!h)
      throw new MalformedChunkError(this.ref(), frame.length < HEADER_BYTES ? 'short header' : 'bad magic');
    const ref = this.ref(h.seq);
    if (h.version !== VERSION) throw new MalformedChunkError(ref, `version ${h.version}`);
    if ((h.flags & ~FLAG_LAST) !== 0 || h.reserved !== 0)
      throw new MalformedChunkError(ref, 'reserved bits set');
    if (h.length > MAX_CHUNK_BYTES) throw new MalformedChunkError(ref, `length ${h.length} over the limit`);
    if (frame.length !== frameBytes(h.length)) {
      throw new MalformedChunkError(ref, `frame of ${frame.length} bytes for ${h.length} bytes of data`);
    }
    if (this.ended) throw new ChunkAfterEndError(ref);
    if (h.round !== this.binding.round) throw new ChunkWrongRoundError(ref, h.round);
    if (this.streamId && !h.streamId.equals(this.streamId)) throw new ChunkForeignStreamError(ref);
    if (h.seq < this.expectedSeq) throw new ChunkReplayedError(ref);
    if (h.seq > this.expectedSeq) throw new ChunkOutOfOrderError(ref);

    const key =
      this.key && this.streamId ? this.key : deriveStreamKey(this.migrationKey, this.binding, h.streamId);
    const buf = Buffer.from(frame.buffer, frame.byteOffset, frame.length);
    const header = buf.subarray(0, HEADER_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', key, nonceFor(h.seq), { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.concat([header, Buffer.from(this.binding.migrationId, 'utf8')]));
    decipher.setAuthTag(buf.subarray(HEADER_BYTES + h.length));
    let plaintext: Buffer;
    try {
      plaintext = Buffer.concat([
        decipher.update(buf.subarray(HEADER_BYTES, HEADER_BYTES + h.length)),
        decipher.final(),
      ]);
    } catch (cause) {
      throw new ChunkAuthenticationError(ref, { cause });
    }
    // Only an authenticated first chunk fixes the stream id (and key) for the rest of the stream.
    this.streamId ??= h.streamId;
    this.key ??= key;
    this.expectedSeq++;
    this.bytes += plaintext.length;
    const last = (h.flags & FLAG_LAST) !== 0;
    if (last) this.ended = true;
    return { seq: h.seq, last, plaintext };
  }
}
