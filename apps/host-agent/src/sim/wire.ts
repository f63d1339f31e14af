import { PAGE_SIZE, type PagePayload } from './memory.js';

/**
 * The simulated hypervisor's migration stream over TCP: frames of `u32 length ‖ u8 type ‖ payload`
 * (length counts type and payload, big-endian). Source → destination: HELLO, then PAGE frames pass by
 * pass (SYNC between passes), DEVICE state and END; destination → source (the return path): ACK once
 * everything is applied, or NACK with the reason it refused the stream.
 */
export const FrameType = {
  Hello: 1,
  Page: 2,
  Sync: 3,
  Device: 4,
  End: 5,
  Ack: 6,
  Nack: 7,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

export interface Frame {
  type: FrameTypeCode;
  payload: Buffer;
}

/** Largest frame accepted (a sealed page is ~4.2 KiB; HELLO carries certificates). */
export const MAX_FRAME_BYTES = 1 << 20;
const PAGE_KIND = { zero: 0, raw: 1, sealed: 2 } as const;
const SEV_HEADER_BYTES = 52;

export class StreamFormatError extends Error {
  override readonly name = 'StreamFormatError';
}

export function encodeFrame(type: FrameTypeCode, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length + 1, 0);
  head.writeUInt8(type, 4);
  return Buffer.concat([head, payload]);
}

export const jsonFrame = (type: FrameTypeCode, value: unknown): Buffer =>
  encodeFrame(type, Buffer.from(JSON.stringify(value)));

export function parseJson<T>(frame: Frame): T {
  try {
    return JSON.parse(frame.payload.toString('utf8')) as T;
  } catch {
    throw new StreamFormatError(`frame type ${frame.type} does not hold JSON`);
  }
}

export function encodePage(gfn: number, page: PagePayload): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(gfn, 0);
  head.writeUInt8(PAGE_KIND[page.kind], 4);
  const body = page.kind === 'zero' ? [] : page.kind === 'raw' ? [page.data] : [page.header, page.data];
  return encodeFrame(FrameType.Page, Buffer.concat([head, ...body]));
}

export function decodePage(payload: Buffer): { gfn: number; page: PagePayload } {
  if (payload.length < 5) throw new StreamFormatError('PAGE frame shorter than its header');
  const gfn = payload.readUInt32BE(0);
  const kind = payload.readUInt8(4);
  const body = payload.subarray(5);
  if (kind === PAGE_KIND.zero && body.length === 0) return { gfn, page: { kind: 'zero' } };
  if (kind === PAGE_KIND.raw && body.length === PAGE_SIZE) return { gfn, page: { kind: 'raw', data: body } };
  if (kind === PAGE_KIND.sealed && body.length === SEV_HEADER_BYTES + PAGE_SIZE) {
    return {
      gfn,
      page: {
        kind: 'sealed',
        header: body.subarray(0, SEV_HEADER_BYTES),
        data: body.subarray(SEV_HEADER_BYTES),
      },
    };
  }
  throw new StreamFormatError(`PAGE frame for gfn ${gfn} has kind ${kind} and ${body.length} bytes`);
}

/** Splits a byte stream into frames. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: Frame[] = [];
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(0);
      if (len < 1 || len > MAX_FRAME_BYTES)
        throw new StreamFormatError(`frame length ${len} is out of range`);
      if (this.buf.length < 4 + len) break;
      const type = this.buf.readUInt8(4);
      if (type < FrameType.Hello || type > FrameType.Nack)
        throw new StreamFormatError(`unknown frame type ${type}`);
      frames.push({ type: type as FrameTypeCode, payload: Buffer.from(this.buf.subarray(5, 4 + len)) });
      this.buf = this.buf.subarray(4 + len);
    }
    return frames;
  }
}
