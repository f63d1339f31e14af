import { timingSafeEqual } from 'node:crypto';
import {
  SevInvalidLengthError,
  SevInvalidParamError,
  SevReservedBytesError,
  SevTruncatedError,
} from './errors.js';

/**
 * Byte helpers for the SEV half (internal: not re-exported from the package). Firmware structures are
 * little-endian; big numbers are stored little-endian in fixed-width zero-padded fields, while Node's
 * crypto wants big-endian, hence the bigint conversions.
 */

/** A view of `bytes` as a Buffer without copying. */
function buf(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** LE32 at `offset`. */
export function readU32(bytes: Uint8Array, offset: number): number {
  return buf(bytes).readUInt32LE(offset);
}

/** Writes LE32 at `offset`. */
export function writeU32(target: Uint8Array, offset: number, value: number): void {
  buf(target).writeUInt32LE(value >>> 0, offset);
}

/** LE32(value) as 4 fresh bytes. */
export function u32le(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32LE(value >>> 0, 0);
  return out;
}

/** Throws SevTruncatedError / SevInvalidLengthError unless `bytes` is exactly `size` long. */
export function requireExactLength(bytes: Uint8Array, size: number, what: string): void {
  if (bytes.length < size) throw new SevTruncatedError(what, size, bytes.length);
  if (bytes.length > size) throw new SevInvalidLengthError(what, size, bytes.length);
}

/** Throws SevTruncatedError unless `bytes` holds at least `size` bytes. */
export function requireAtLeast(bytes: Uint8Array, size: number, what: string): void {
  if (bytes.length < size) throw new SevTruncatedError(what, size, bytes.length);
}

/** Throws SevReservedBytesError on the first non-zero byte in [start, end). */
export function requireZero(bytes: Uint8Array, start: number, end: number, field: string): void {
  for (let i = start; i < end; i++) {
    if (bytes[i] !== 0) throw new SevReservedBytesError(field, i);
  }
}

/** Interprets a little-endian byte string as an unsigned integer. */
export function bigintFromLe(bytes: Uint8Array): bigint {
  const hex = Buffer.from(bytes).reverse().toString('hex');
  return hex.length === 0 ? 0n : BigInt(`0x${hex}`);
}

/** Interprets a big-endian byte string as an unsigned integer. */
export function bigintFromBe(bytes: Uint8Array): bigint {
  const hex = buf(bytes).toString('hex');
  return hex.length === 0 ? 0n : BigInt(`0x${hex}`);
}

/** `value` as exactly `size` big-endian bytes; throws when it does not fit. */
export function bigintToBe(value: bigint, size: number, what = 'integer'): Buffer {
  if (value < 0n) throw new SevInvalidParamError(what, 'negative');
  const hex = value.toString(16);
  if (hex.length > size * 2) throw new SevInvalidParamError(what, `does not fit in ${size} bytes`);
  return Buffer.from(hex.padStart(size * 2, '0'), 'hex');
}

/** `value` as exactly `size` little-endian bytes; throws when it does not fit. */
export function bigintToLe(value: bigint, size: number, what = 'integer'): Buffer {
  return bigintToBe(value, size, what).reverse();
}

/** Minimal big-endian encoding (at least one byte), as JWK wants it. */
export function bigintToMinimalBe(value: bigint): Buffer {
  const hex = value.toString(16);
  return Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
}

/** Constant-time equality that is false (not a throw) on a length mismatch. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Lower-case hex. */
export function toHex(bytes: Uint8Array): string {
  return buf(bytes).toString('hex');
}

/** Copies `bytes` and checks its length: for keys, IVs and nonces given by callers. */
export function fixedParam(bytes: Uint8Array, size: number, param: string): Buffer {
  if (bytes.length !== size) {
    throw new SevInvalidParamError(param, `must be ${size} bytes, got ${bytes.length}`);
  }
  return Buffer.from(bytes);
}
