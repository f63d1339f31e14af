import { connect, type Socket } from 'node:net';
import { CHALLENGE_BYTES, DEFAULT_CHUNK_BYTES, type StreamChunker, StreamSealer } from '@ccm/sealing';
import { CcmError, ErrorCodes, GuestErrorCodes, isCcmError } from '@ccm/contracts';

/** What the target said about a stream. */
export interface SendResult {
  readonly chunks: number;
  readonly bytes: number;
}

/**
 * Sends one round's image to the target guest: reads the target's challenge, seals the image in
 * chunks bound to (migration, round, challenge), writes them with backpressure, and waits for the
 * target's verdict. An image given in pieces is sealed and sent as they come (a piece is asked for
 * only while the socket takes more), never joined whole; a piece that fails to come (its read failed)
 * fails the stream with that error. A refusal comes back as STREAM_REFUSED naming the chunk; a target that dies or
 * does not answer within `timeoutMs`, or a stream on which nothing moves (no byte read, no write
 * taken by the kernel) for `stallMs` (a dead guest sends no reset), is UNAVAILABLE (retryable).
 */
export function sendRound(
  key: Buffer,
  to: { host: string; port: number },
  binding: { migrationId: string; round: number },
  image: Buffer | AsyncIterable<Buffer>,
  timeoutMs: number,
  chunkBytes = DEFAULT_CHUNK_BYTES,
  stallMs = timeoutMs,
): Promise<SendResult> {
  return new Promise((resolve, reject) => {
    const sock: Socket = connect(to.port, to.host);
    let got = Buffer.alloc(0);
    let sent = false;
    let settled = false;
    let chunks = 0;
    let bytes = 0;
    const finish = (err: Error | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve({ chunks, bytes });
    };
    const unavailable = (why: string) =>
      new CcmError(ErrorCodes.Unavailable, `image stream to ${to.host}:${to.port} failed: ${why}`, {
        retryable: true,
        details: { round: binding.round, chunksSent: chunks },
      });
    const timer = setTimeout(() => finish(unavailable(`no verdict within ${timeoutMs} ms`)), timeoutMs);
    sock.setTimeout(Math.min(stallMs, timeoutMs), () =>
      finish(unavailable(`nothing moved for ${stallMs} ms (the target is gone?)`)),
    );
    sock.on('error', (e) => finish(unavailable(e.message)));
    sock.on('close', () => finish(unavailable('the target closed the connection without a verdict')));
    sock.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (!sent && got.length >= CHALLENGE_BYTES) {
        sent = true;
        const challenge = got.subarray(0, CHALLENGE_BYTES);
        got = got.subarray(CHALLENGE_BYTES);
        void write(new StreamSealer(key, { ...binding, challenge }).chunker(chunkBytes)).catch((e: Error) =>
          finish(isCcmError(e) ? e : unavailable(e.message)),
        );
      }
      const nl = sent ? got.indexOf('\n') : -1;
      if (nl < 0) return;
      const line = got.subarray(0, nl).toString('utf8');
      if (line === 'OK') return finish(undefined);
      finish(refusal(line, binding.round));
    });
    async function write(chunker: StreamChunker): Promise<void> {
      const pieces = Buffer.isBuffer(image) ? slices(image, chunkBytes) : image;
      for await (const piece of pieces) {
        if (!(await send(chunker.push(piece)))) return;
      }
      await send(chunker.end());
    }
    /** Writes frames with backpressure; false once the stream is over (the pieces stop being read). */
    async function send(frames: Buffer[]): Promise<boolean> {
      for (const frame of frames) {
        if (settled) return false;
        chunks++;
        bytes += frame.length;
        if (!sock.write(frame))
          await new Promise<void>((r) => {
            const go = () => {
              sock.off('drain', go);
              sock.off('close', go);
              r();
            };
            sock.on('drain', go);
            sock.on('close', go);
          });
      }
      return !settled;
    }
  });
}

/** A whole image in pieces of a chunk each (sealed one by one as the socket takes them). */
function* slices(image: Buffer, size: number): Generator<Buffer> {
  for (let off = 0; off < image.length; off += size) yield image.subarray(off, off + size);
}

function refusal(line: string, round: number): CcmError {
  let wire: { code?: string; message?: string; chunk?: unknown } = {};
  try {
    wire = JSON.parse(line.replace(/^ERR /, '')) as typeof wire;
  } catch {
    wire = { message: line };
  }
  return new CcmError(
    GuestErrorCodes.StreamRefused,
    `the target refused round ${round}: ${wire.message ?? 'no reason'}`,
    {
      retryable: false,
      details: {
        round,
        ...(wire.code ? { sealing: wire.code } : {}),
        ...(wire.chunk ? { chunk: wire.chunk } : {}),
      },
    },
  );
}
