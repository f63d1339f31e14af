import { createHmac } from 'node:crypto';
import { u32le } from './bytes.js';
import { SevInvalidParamError } from './errors.js';

/** Labels of the SEV key derivations (ASCII, no terminator; a 0x00 separator follows in the KDF input). */
export const SevKdfLabel = {
  MASTER_SECRET: 'sev-master-secret',
  KEK: 'sev-kek',
  KIK: 'sev-kik',
} as const;

/** Length of MASTER_SECRET, KEK, KIK, TEK and TIK: 128 bits. */
export const SEV_TRANSPORT_KEY_SIZE = 16;
/** Output block of the PRF (HMAC-SHA256). */
const PRF_BLOCK = 32;

/**
 * NIST SP 800-108 KDF in counter mode with HMAC-SHA256, as AMD's firmware and tools use it:
 * `K(i) = HMAC(KI, LE32(i) ‖ label ‖ 0x00 ‖ context ‖ LE32(L))`. Counter and length are **little-endian**
 * (a big-endian reading of NIST's text fails the known answers). Returns the first `outBytes` bytes.
 */
export function sevKdf(key: Uint8Array, label: string, context: Uint8Array, outBytes: number): Buffer {
  if (!Number.isInteger(outBytes) || outBytes <= 0)
    throw new SevInvalidParamError('outBytes', 'must be positive');
  const bits = u32le(outBytes * 8);
  const fixed = Buffer.concat([Buffer.from(label, 'ascii'), Buffer.of(0), context, bits]);
  const blocks: Buffer[] = [];
  for (let i = 1; blocks.length * PRF_BLOCK < outBytes; i++) {
    blocks.push(createHmac('sha256', key).update(u32le(i)).update(fixed).digest());
  }
  return Buffer.concat(blocks).subarray(0, outBytes);
}

/** KEK and KIK (with the master secret they came from) for one session. */
export interface SevSessionKeys {
  readonly masterSecret: Buffer;
  /** Key-encryption key: AES-128-CTR key that wraps TEK ‖ TIK. */
  readonly kek: Buffer;
  /** Key-integrity key: HMAC-SHA256 key of WRAP_MAC. */
  readonly kik: Buffer;
}

/**
 * MASTER_SECRET = KDF(Z, "sev-master-secret", NONCE), then KEK = KDF(master, "sev-kek") and
 * KIK = KDF(master, "sev-kik"), all 128 bits. Z is the ECDH shared secret (48 bytes on P-384).
 */
export function deriveSevSessionKeys(sharedSecret: Uint8Array, nonce: Uint8Array): SevSessionKeys {
  const masterSecret = sevKdf(sharedSecret, SevKdfLabel.MASTER_SECRET, nonce, SEV_TRANSPORT_KEY_SIZE);
  const empty = Buffer.alloc(0);
  return {
    masterSecret,
    kek: sevKdf(masterSecret, SevKdfLabel.KEK, empty, SEV_TRANSPORT_KEY_SIZE),
    kik: sevKdf(masterSecret, SevKdfLabel.KIK, empty, SEV_TRANSPORT_KEY_SIZE),
  };
}
