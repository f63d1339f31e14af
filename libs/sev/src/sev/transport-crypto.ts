import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { bytesEqual } from './bytes.js';

/** Source of random bytes; injectable so tests and known-answer runs are deterministic. */
export type SevRandomSource = (size: number) => Uint8Array;

/** Node's CSPRNG. */
export const defaultSevRandom: SevRandomSource = (size) => randomBytes(size);

/**
 * AES-128-CTR with the 16-byte IV as the initial counter block, incremented as a 128-bit big-endian
 * integer (OpenSSL's `aes-128-ctr`). Encryption and decryption are the same operation.
 */
export function sevAes128Ctr(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Buffer {
  const cipher = createCipheriv('aes-128-ctr', key, iv);
  return Buffer.concat([cipher.update(data), cipher.final()]);
}

/** HMAC-SHA256 over the concatenation of `parts`. */
export function sevHmacSha256(key: Uint8Array, ...parts: readonly Uint8Array[]): Buffer {
  const mac = createHmac('sha256', key);
  for (const part of parts) mac.update(part);
  return mac.digest();
}

/** Constant-time MAC comparison. */
export function sevMacEqual(a: Uint8Array, b: Uint8Array): boolean {
  return bytesEqual(a, b);
}
