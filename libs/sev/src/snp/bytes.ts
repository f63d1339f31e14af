import { timingSafeEqual } from 'node:crypto';
import { SnpTruncatedInputError } from './errors.js';

/**
 * Byte helpers for the SNP half. Firmware structures are little-endian with fixed widths; these helpers
 * keep every read bounds-checked so a short buffer becomes a typed error, never a RangeError.
 */

/** Throws {@link SnpTruncatedInputError} unless `bytes` holds at least `need` bytes. */
export function requireLength(bytes: Uint8Array, need: number, what: string): void {
  if (bytes.length < need) throw new SnpTruncatedInputError(what, need, bytes.length);
}

/** Throws {@link SnpTruncatedInputError} unless `bytes` holds exactly `need` bytes. */
export function requireExactLength(bytes: Uint8Array, need: number, what: string): void {
  if (bytes.length !== need) throw new SnpTruncatedInputError(what, need, bytes.length);
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function readU32(bytes: Uint8Array, offset: number): number {
  return view(bytes).getUint32(offset, true);
}

export function readU64(bytes: Uint8Array, offset: number): bigint {
  return view(bytes).getBigUint64(offset, true);
}

export function writeU16(bytes: Uint8Array, offset: number, value: number): void {
  view(bytes).setUint16(offset, value, true);
}

export function writeU32(bytes: Uint8Array, offset: number, value: number): void {
  view(bytes).setUint32(offset, value, true);
}

export function writeU64(bytes: Uint8Array, offset: number, value: bigint): void {
  view(bytes).setBigUint64(offset, value, true);
}

/** A copy of `bytes[offset, offset + size)` (copies so parsed values never alias caller buffers). */
export function copyRange(bytes: Uint8Array, offset: number, size: number): Uint8Array {
  return bytes.slice(offset, offset + size);
}

/** True when every byte of `bytes[offset, offset + size)` is zero. */
export function isZeroRange(bytes: Uint8Array, offset = 0, size = bytes.length - offset): boolean {
  for (let i = offset; i < offset + size; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** A reversed copy (little-endian field to the big-endian integer crypto APIs expect, and back). */
export function reversed(bytes: Uint8Array): Uint8Array {
  return Uint8Array.from(bytes).reverse();
}

/** Constant-time equality for secrets and digests; different lengths compare unequal. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}
