/**
 * Every failure libs/sealing reports is a {@link SealingError}: one subclass per failure with a stable
 * `code`, a `retryable` hint and the chunk it concerns. A stream that failed stays failed: a receiver
 * never accepts anything after a refused chunk, so a caller cannot restore from a partial image.
 */
export abstract class SealingError extends Error {
  abstract readonly code: string;
  /** Whether sending the stream again (a new stream, from the start) can succeed. */
  readonly retryable: boolean = false;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Where in a stream a failure happened: enough for an operator to name the chunk. */
export interface ChunkRef {
  readonly migrationId: string;
  readonly round: number;
  /** The sequence number the receiver expected next. */
  readonly expectedSeq: number;
  /** The sequence number the offending chunk carried, when it could be read. */
  readonly seq?: number;
}

const where = (r: ChunkRef): string =>
  `migration ${r.migrationId} round ${r.round} chunk ${r.seq ?? '?'} (expected ${r.expectedSeq})`;

/** Base of the failures that concern one chunk of a stream. */
export abstract class ChunkError extends SealingError {
  constructor(
    readonly chunk: ChunkRef,
    what: string,
    options?: { cause?: unknown },
  ) {
    super(`${what}: ${where(chunk)}`, options);
  }
}

/** The frame is not a sealed chunk of this format (bad magic, version, reserved bits, length). */
export class MalformedChunkError extends ChunkError {
  readonly code = 'CHUNK_MALFORMED';
  constructor(
    chunk: ChunkRef,
    readonly reason: string,
  ) {
    super(chunk, `malformed chunk (${reason})`);
  }
}

/** The chunk's tag does not verify: its bytes, header or binding were altered, or the key differs. */
export class ChunkAuthenticationError extends ChunkError {
  readonly code = 'CHUNK_AUTH_FAILED';
  constructor(chunk: ChunkRef, options?: { cause?: unknown }) {
    super(chunk, 'chunk failed authentication (altered, or sealed under another key or binding)', options);
  }
}

/** The chunk belongs to another round than the one being received. */
export class ChunkWrongRoundError extends ChunkError {
  readonly code = 'CHUNK_WRONG_ROUND';
  constructor(
    chunk: ChunkRef,
    readonly chunkRound: number,
  ) {
    super(chunk, `chunk of round ${chunkRound} in the stream of another round`);
  }
}

/** The chunk belongs to another stream (another attempt of this round, or another migration). */
export class ChunkForeignStreamError extends ChunkError {
  readonly code = 'CHUNK_FOREIGN_STREAM';
  constructor(chunk: ChunkRef) {
    super(chunk, 'chunk of another stream');
  }
}

/** A chunk whose sequence number was already accepted arrived again. */
export class ChunkReplayedError extends ChunkError {
  readonly code = 'CHUNK_REPLAYED';
  constructor(chunk: ChunkRef) {
    super(chunk, 'chunk replayed');
  }
}

/** A chunk arrived ahead of the expected one: the expected chunk was dropped or the stream reordered. */
export class ChunkOutOfOrderError extends ChunkError {
  readonly code = 'CHUNK_OUT_OF_ORDER';
  constructor(chunk: ChunkRef) {
    super(chunk, `chunk ${chunk.expectedSeq} missing (dropped or reordered)`);
  }
}

/** A chunk arrived after the one marked last. */
export class ChunkAfterEndError extends ChunkError {
  readonly code = 'CHUNK_AFTER_END';
  constructor(chunk: ChunkRef) {
    super(chunk, 'chunk after the last chunk');
  }
}

/** The stream ended before its last chunk arrived (truncated, or the sender died). */
export class StreamTruncatedError extends ChunkError {
  readonly code = 'STREAM_TRUNCATED';
  override readonly retryable = true;
  constructor(
    chunk: ChunkRef,
    readonly reason: string,
  ) {
    super(chunk, `stream ended before its last chunk (${reason})`);
  }
}

/** The receiver already refused this stream; nothing more is accepted from it. */
export class StreamFailedError extends SealingError {
  readonly code = 'STREAM_FAILED';
  constructor(readonly first: SealingError) {
    super(`stream already refused: ${first.message}`, { cause: first });
  }
}

/** A sealed migration key could not be opened: not sealed to this identity, altered, or malformed. */
export class KeyUnsealError extends SealingError {
  readonly code = 'KEY_UNSEAL_FAILED';
  constructor(
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot unseal the migration key: ${reason}`, options);
  }
}

export const isSealingError = (e: unknown): e is SealingError => e instanceof SealingError;
export const isChunkError = (e: unknown): e is ChunkError => e instanceof ChunkError;
