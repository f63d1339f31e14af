import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ChunkAfterEndError,
  ChunkAuthenticationError,
  ChunkForeignStreamError,
  ChunkOutOfOrderError,
  ChunkReplayedError,
  ChunkWrongRoundError,
  MalformedChunkError,
  StreamFailedError,
  StreamTruncatedError,
} from './errors.js';
import { HEADER_BYTES, MAX_CHUNK_BYTES, Offset } from './format.js';
import { FrameReader } from './frame-reader.js';
import { StreamOpener } from './opener.js';
import { StreamSealer } from './sealer.js';

const key = randomBytes(32);
const challenge = randomBytes(16);
const binding = { migrationId: 'mig-0123456789abcdef01234567', round: 2, challenge };
const data = randomBytes(10_000);

function sealed(chunkBytes = 1000, b = binding, k = key): Buffer[] {
  return [...new StreamSealer(k, b).sealAll(data, chunkBytes)];
}

function openAll(frames: Buffer[], b = binding, k = key): Buffer {
  const o = new StreamOpener(k, b);
  const parts = frames.map((f) => o.open(f).plaintext);
  o.finish();
  return Buffer.concat(parts);
}

const flip = (f: Buffer, at: number): Buffer => {
  const c = Buffer.from(f);
  c[at] ^= 0x01;
  return c;
};

describe('sealed image stream', () => {
  it('carries the data across in order and ends at the last chunk', () => {
    const frames = sealed();
    expect(frames).toHaveLength(10);
    expect(openAll(frames).equals(data)).toBe(true);
    expect(frames.every((f) => !f.includes(data.subarray(0, 64)))).toBe(true);
  });

  it('seals an empty image as one last chunk', () => {
    const frames = [...new StreamSealer(key, binding).sealAll(Buffer.alloc(0))];
    expect(frames).toHaveLength(1);
    expect(openAll(frames)).toHaveLength(0);
  });

  it('uses a fresh stream id per sealer, so the same data seals differently', () => {
    const [a] = sealed();
    const [b] = sealed();
    expect(a.subarray(Offset.streamId, HEADER_BYTES).equals(b.subarray(Offset.streamId, HEADER_BYTES))).toBe(
      false,
    );
    expect(a.equals(b)).toBe(false);
  });

  const alterations: Array<[string, (f: Buffer) => Buffer, new (...a: never[]) => Error]> = [
    ['a ciphertext byte', (f) => flip(f, HEADER_BYTES + 5), ChunkAuthenticationError],
    ['a tag byte', (f) => flip(f, f.length - 1), ChunkAuthenticationError],
    ['the last flag', (f) => flip(f, Offset.flags), ChunkAuthenticationError],
    ['a stream id byte', (f) => flip(f, Offset.streamId + 3), ChunkForeignStreamError],
  ];
  it.each(alterations)('refuses a chunk with %s altered, naming it', (_what, alter, refusal) => {
    const frames = sealed();
    frames[3] = alter(frames[3]);
    const o = new StreamOpener(key, binding);
    for (let i = 0; i < 3; i++) o.open(frames[i]);
    const err = captureError(() => o.open(frames[3]));
    expect(err).toBeInstanceOf(refusal);
    expect((err as ChunkAuthenticationError).chunk).toMatchObject({ round: 2, seq: 3, expectedSeq: 3 });
    expect((err as Error).message).toContain('chunk 3');
  });

  it('refuses a dropped chunk as missing, naming the one expected', () => {
    const frames = sealed();
    frames.splice(4, 1);
    const err = captureError(() => openAll(frames));
    expect(err).toBeInstanceOf(ChunkOutOfOrderError);
    expect((err as ChunkOutOfOrderError).chunk).toMatchObject({ expectedSeq: 4, seq: 5 });
    expect((err as Error).message).toContain('chunk 4 missing');
  });

  it('refuses a replayed chunk', () => {
    const frames = sealed();
    frames.splice(5, 0, frames[4]);
    const err = captureError(() => openAll(frames));
    expect(err).toBeInstanceOf(ChunkReplayedError);
    expect((err as ChunkReplayedError).chunk).toMatchObject({ expectedSeq: 5, seq: 4 });
  });

  it('refuses reordered chunks', () => {
    const frames = sealed();
    [frames[6], frames[7]] = [frames[7], frames[6]];
    const err = captureError(() => openAll(frames));
    expect(err).toBeInstanceOf(ChunkOutOfOrderError);
    expect((err as ChunkOutOfOrderError).chunk).toMatchObject({ expectedSeq: 6, seq: 7 });
  });

  it('refuses a truncated stream at finish (the last chunk never came)', () => {
    const frames = sealed().slice(0, 9);
    const err = captureError(() => openAll(frames));
    expect(err).toBeInstanceOf(StreamTruncatedError);
    expect((err as StreamTruncatedError).chunk.expectedSeq).toBe(9);
    expect((err as StreamTruncatedError).retryable).toBe(true);
  });

  it('refuses a chunk after the last one', () => {
    const frames = sealed();
    frames.push(frames[2]);
    expect(captureError(() => openAll(frames))).toBeInstanceOf(ChunkAfterEndError);
  });

  it('refuses a chunk of another round, and a stream of another round', () => {
    const other = sealed(1000, { ...binding, round: 3 });
    const frames = sealed();
    frames[2] = other[2];
    expect(captureError(() => openAll(frames))).toBeInstanceOf(ChunkWrongRoundError);
    expect(captureError(() => openAll(other))).toBeInstanceOf(ChunkWrongRoundError);
  });

  it('refuses a chunk spliced in from another stream of the same round', () => {
    const frames = sealed();
    frames[1] = sealed()[1];
    expect(captureError(() => openAll(frames))).toBeInstanceOf(ChunkForeignStreamError);
  });

  it('refuses a whole recorded stream replayed to a receiver with a fresh challenge', () => {
    const recorded = sealed();
    const err = captureError(() => openAll(recorded, { ...binding, challenge: randomBytes(16) }));
    expect(err).toBeInstanceOf(ChunkAuthenticationError);
    expect((err as ChunkAuthenticationError).chunk.seq).toBe(0);
  });

  it('refuses a forged stream id on the first chunk as unauthenticated', () => {
    const frames = sealed();
    frames[0] = flip(frames[0], Offset.streamId);
    expect(captureError(() => openAll(frames))).toBeInstanceOf(ChunkAuthenticationError);
  });

  it('refuses a stream of another migration or under another key', () => {
    expect(captureError(() => openAll(sealed(), { ...binding, migrationId: 'mig-other' }))).toBeInstanceOf(
      ChunkAuthenticationError,
    );
    expect(captureError(() => openAll(sealed(), binding, randomBytes(32)))).toBeInstanceOf(
      ChunkAuthenticationError,
    );
  });

  it('stays refused after the first bad chunk, even for good ones', () => {
    const frames = sealed();
    const o = new StreamOpener(key, binding);
    o.open(frames[0]);
    expect(() => o.open(flip(frames[1], HEADER_BYTES))).toThrow(ChunkAuthenticationError);
    const err = captureError(() => o.open(frames[1]));
    expect(err).toBeInstanceOf(StreamFailedError);
    expect((err as StreamFailedError).first).toBeInstanceOf(ChunkAuthenticationError);
    expect(() => o.finish()).toThrow(StreamFailedError);
  });

  const malformed: Array<[string, (f: Buffer) => Buffer]> = [
    ['a short header', (f) => f.subarray(0, 10)],
    ['a bad magic', (f) => flip(f, 0)],
    ['another version', (f) => flip(f, Offset.version)],
    ['reserved bits', (f) => flip(f, Offset.reserved + 1)],
    ['a length that does not match', (f) => f.subarray(0, f.length - 1)],
    ['a length over the limit', (f) => withLength(f, MAX_CHUNK_BYTES + 1)],
  ];
  it.each(malformed)('refuses a frame with %s as malformed', (_what, mangle) => {
    const frames = sealed();
    expect(captureError(() => new StreamOpener(key, binding).open(mangle(frames[0])))).toBeInstanceOf(
      MalformedChunkError,
    );
  });

  it('frame reader reassembles frames from arbitrary TCP reads', () => {
    const wire = Buffer.concat(sealed(777));
    const r = new FrameReader(binding);
    const o = new StreamOpener(key, binding);
    const parts: Buffer[] = [];
    for (let off = 0; off < wire.length;) {
      const n = 1 + ((off * 7919) % 1500);
      for (const f of r.push(wire.subarray(off, off + n))) parts.push(o.open(f).plaintext);
      off += n;
    }
    expect(r.pending).toBe(0);
    o.finish();
    expect(Buffer.concat(parts).equals(data)).toBe(true);
  });

  it('frame reader keeps its own copy of each read (a reused read buffer does not alter a frame)', () => {
    const [frame] = sealed();
    const read = Buffer.from(frame);
    const r = new FrameReader(binding);
    expect(r.push(read.subarray(0, 1000))).toEqual([]);
    read.fill(0, 0, 1000);
    const [whole] = r.push(Buffer.from(frame).subarray(1000));
    expect(r.pending).toBe(0);
    expect(new StreamOpener(key, binding).open(whole).plaintext.length).toBeGreaterThan(0);
  });

  it('frame reader refuses garbage and an oversized length before buffering it', () => {
    expect(() => new FrameReader(binding).push(randomBytes(64))).toThrow(MalformedChunkError);
    expect(() => new FrameReader(binding).push(withLength(sealed()[0], 0xffffffff))).toThrow(
      /over the limit/,
    );
  });

  it.each<[string, number[]]>([
    ['pieces smaller than a chunk', [1, 333, 999, 1000, 7]],
    ['pieces larger than a chunk', [2500, 4321]],
    ['a piece ending exactly at a chunk boundary', [1000, 2000]],
    ['empty pieces among them', [0, 4000, 0, 1]],
  ])('seals data handed over in %s as the very frames sealAll gives for it whole', (_what, cuts) => {
    const fixed = () => Buffer.alloc(16, 9);
    const whole = [...new StreamSealer(key, binding, fixed).sealAll(data, 1000)];
    const c = new StreamSealer(key, binding, fixed).chunker(1000);
    const frames: Buffer[] = [];
    let off = 0;
    for (const n of [...cuts, data.length]) {
      frames.push(...c.push(data.subarray(off, Math.min(off + n, data.length))));
      off = Math.min(off + n, data.length);
    }
    frames.push(...c.end());
    expect(frames).toHaveLength(whole.length);
    frames.forEach((f, i) => expect(f.equals(whole[i]), `frame ${i}`).toBe(true));
    expect(openAll(frames).equals(data)).toBe(true);
  });

  it('chunker: nothing handed over is one empty last chunk; a bad chunk size is refused', () => {
    const c = new StreamSealer(key, binding).chunker(1000);
    expect(c.push(Buffer.alloc(0))).toEqual([]);
    const frames = c.end();
    expect(frames).toHaveLength(1);
    expect(openAll(frames)).toHaveLength(0);
    expect(() => new StreamSealer(key, binding).chunker(0)).toThrow(RangeError);
    expect(() => new StreamSealer(key, binding).chunker(MAX_CHUNK_BYTES + 1)).toThrow(RangeError);
  });

  it('sealer refuses misuse: bad key, bad binding, sealing after the end', () => {
    expect(() => new StreamSealer(randomBytes(16), binding)).toThrow(RangeError);
    expect(() => new StreamSealer(key, { ...binding, challenge: randomBytes(8) })).toThrow(RangeError);
    expect(() => new StreamSealer(key, { ...binding, round: -1 })).toThrow(RangeError);
    const s = new StreamSealer(key, binding);
    s.seal(Buffer.from('x'), true);
    expect(() => s.seal(Buffer.from('y'))).toThrow(/last chunk/);
  });
});

function withLength(f: Buffer, length: number): Buffer {
  const c = Buffer.from(f);
  c.writeUInt32BE(length, Offset.length);
  return c;
}

function captureError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a refusal');
}
