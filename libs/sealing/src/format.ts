/**
 * The sealed image stream's wire format, version 1 (named offsets, exact lengths).
 *
 * A stream carries one round of checkpoint images (a pre-dump round or the final dump) from the source
 * guest to the target guest as a sequence of frames:
 *
 * ```
 * offset size field
 *      0    4 magic "CCMS"
 *      4    1 version (1)
 *      5    1 flags: bit 0 = last chunk of the stream; other bits zero
 *      6    2 reserved, zero
 *      8    4 round (u32 BE)
 *     12    4 seq (u32 BE), 0, 1, 2, ... within the stream
 *     16    4 plaintext length (u32 BE), at most MAX_CHUNK_BYTES
 *     20   16 stream id: random, chosen by the sender for this stream
 *     36    n ciphertext (AES-256-GCM, n = plaintext length)
 *   36+n   16 GCM tag
 * ```
 *
 * Key: `HKDF-SHA256(ikm = migration key, salt = stream id ‖ receiver challenge,
 * info = "ccm-image-stream-v1" 0x00 migrationId 0x00 round(u32 BE))`. The receiver's challenge is 16
 * random bytes it sends before the stream starts, so a stream recorded earlier (another attempt of the
 * same round) opens under no key the receiver will use; the sender's random stream id means the sender
 * never reuses a (key, nonce) pair whatever anybody else sends it. Nonce: 8 zero bytes ‖ seq (u32 BE).
 * AAD: the 36 header bytes ‖ migrationId (UTF-8), so a chunk moved to another migration, round, position
 * or stream, or with its last flag flipped, fails authentication.
 */
export const MAGIC = Buffer.from('CCMS', 'ascii');
export const VERSION = 1;
export const FLAG_LAST = 0x01;
export const HEADER_BYTES = 36;
export const TAG_BYTES = 16;
export const STREAM_ID_BYTES = 16;
export const CHALLENGE_BYTES = 16;
export const KEY_BYTES = 32;
/** Largest plaintext one chunk carries (4 MiB): a frame larger than this is malformed. */
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024;
/** The default chunk size senders use (1 MiB). */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** Sequence numbers are u32: a stream holds at most 2^32 chunks. */
export const MAX_SEQ = 0xffff_ffff;
export const MAX_ROUND = 0xffff_ffff;

export const Offset = {
  magic: 0,
  version: 4,
  flags: 5,
  reserved: 6,
  round: 8,
  seq: 12,
  length: 16,
  streamId: 20,
} as const;

export const HKDF_INFO_PREFIX = 'ccm-image-stream-v1';

/** What binds a stream: the migration, the round, and the receiver's fresh challenge. */
export interface StreamBinding {
  readonly migrationId: string;
  readonly round: number;
  /** CHALLENGE_BYTES random bytes chosen by the receiver for this stream. */
  readonly challenge: Uint8Array;
}

/** One decoded frame header. */
export interface ChunkHeader {
  readonly version: number;
  readonly flags: number;
  readonly reserved: number;
  readonly round: number;
  readonly seq: number;
  readonly length: number;
  readonly streamId: Buffer;
}

export function encodeHeader(h: Omit<ChunkHeader, 'version' | 'reserved'>): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(b, Offset.magic);
  b.writeUInt8(VERSION, Offset.version);
  b.writeUInt8(h.flags, Offset.flags);
  b.writeUInt16BE(0, Offset.reserved);
  b.writeUInt32BE(h.round, Offset.round);
  b.writeUInt32BE(h.seq, Offset.seq);
  b.writeUInt32BE(h.length, Offset.length);
  h.streamId.copy(b, Offset.streamId);
  return b;
}

/** Reads a header without judging it (the opener does); `null` when `b` is not a CCMS frame at all. */
export function decodeHeader(b: Uint8Array): ChunkHeader | null {
  if (b.length < HEADER_BYTES) return null;
  const buf = Buffer.from(b.buffer, b.byteOffset, HEADER_BYTES);
  if (!buf.subarray(0, 4).equals(MAGIC)) return null;
  return {
    version: buf.readUInt8(Offset.version),
    flags: buf.readUInt8(Offset.flags),
    reserved: buf.readUInt16BE(Offset.reserved),
    round: buf.readUInt32BE(Offset.round),
    seq: buf.readUInt32BE(Offset.seq),
    length: buf.readUInt32BE(Offset.length),
    streamId: Buffer.from(buf.subarray(Offset.streamId, Offset.streamId + STREAM_ID_BYTES)),
  };
}

/** Total frame size for a plaintext of `length` bytes. */
export const frameBytes = (length: number): number => HEADER_BYTES + length + TAG_BYTES;

export function nonceFor(seq: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeUInt32BE(seq, 8);
  return n;
}

export function checkBinding(b: StreamBinding): void {
  if (typeof b.migrationId !== 'string' || b.migrationId.length === 0 || b.migrationId.length > 200) {
    throw new RangeError('migrationId must be 1..200 characters');
  }
  if (!Number.isInteger(b.round) || b.round < 0 || b.round > MAX_ROUND) {
    throw new RangeError(`round must be an integer in 0..${MAX_ROUND}`);
  }
  if (b.challenge.length !== CHALLENGE_BYTES) {
    throw new RangeError(`challenge must be ${CHALLENGE_BYTES} bytes`);
  }
}
