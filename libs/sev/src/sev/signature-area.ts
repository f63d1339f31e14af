import { parseSevAlgorithm, parseSevUsage, sevAlgorithmKind } from './algorithms.js';
import { bigintFromLe, bigintToLe, readU32, requireZero, writeU32 } from './bytes.js';
import {
  SevAlgorithm,
  type SevAlgorithmCode,
  SevEcdsaSigOffset,
  SEV_EC_FIELD_SIZE,
  SEV_SIG_SIZE,
  SevUsage,
  type SevUsageCode,
} from './constants.js';
import { SevUnknownAlgorithmError } from './errors.js';

/** Contents of a 512-byte signature area, by the layout its SIGn_ALGO selects. */
export type SevSignatureValue =
  | { readonly kind: 'none' }
  /** RSA signature integer (stored little-endian in the first modulus-size bytes). */
  | { readonly kind: 'rsa'; readonly s: bigint }
  /** ECDSA R and S (each stored little-endian in a 72-byte field). */
  | { readonly kind: 'ecdsa'; readonly r: bigint; readonly s: bigint };

/** One of the two signature slots of a SEV certificate: SIGn_USAGE, SIGn_ALGO and SIGn. */
export interface SevSignatureSlot {
  /** Usage of the key that made the signature (INVALID for an empty slot). */
  readonly usage: SevUsageCode;
  /** Algorithm of the signature (NONE for an empty slot). */
  readonly algorithm: SevAlgorithmCode;
  readonly value: SevSignatureValue;
}

/** An empty slot as firmware writes it: USAGE 0x1000, ALGO 0, 512 zero bytes. */
export const EMPTY_SEV_SIGNATURE_SLOT: SevSignatureSlot = Object.freeze({
  usage: SevUsage.INVALID,
  algorithm: SevAlgorithm.NONE,
  value: Object.freeze({ kind: 'none' as const }),
});

/** True when the slot carries no signature. */
export function isEmptySevSignatureSlot(slot: SevSignatureSlot): boolean {
  return slot.value.kind === 'none';
}

/**
 * Decodes one slot: 4-byte usage, 4-byte algorithm and the 512-byte area at `offset`. Reserved bytes
 * (the tail of an ECDSA area, the whole area of an empty slot) must be zero. ECDH is not a signature
 * algorithm and is refused.
 */
export function decodeSevSignatureSlot(cert: Uint8Array, offset: number, name: string): SevSignatureSlot {
  const usage = parseSevUsage(readU32(cert, offset), `${name}_USAGE`);
  const algorithm = parseSevAlgorithm(readU32(cert, offset + 4), `${name}_ALGO`);
  const area = cert.subarray(offset + 8, offset + 8 + SEV_SIG_SIZE);
  const kind = sevAlgorithmKind(algorithm);
  switch (kind) {
    case 'none':
      requireZero(area, 0, SEV_SIG_SIZE, `${name} (empty slot)`);
      return { usage, algorithm, value: { kind: 'none' } };
    case 'rsa':
      return { usage, algorithm, value: { kind: 'rsa', s: bigintFromLe(area) } };
    case 'ecdsa': {
      requireZero(area, SevEcdsaSigOffset.RESERVED, SEV_SIG_SIZE, `${name} reserved`);
      const r = bigintFromLe(area.subarray(SevEcdsaSigOffset.R, SevEcdsaSigOffset.R + SEV_EC_FIELD_SIZE));
      const s = bigintFromLe(area.subarray(SevEcdsaSigOffset.S, SevEcdsaSigOffset.S + SEV_EC_FIELD_SIZE));
      return { usage, algorithm, value: { kind: 'ecdsa', r, s } };
    }
    case 'ecdh':
      throw new SevUnknownAlgorithmError(`${name}_ALGO`, algorithm, 'not a signature algorithm');
  }
}

/** Writes one slot (usage, algorithm, 512-byte area) into `cert` at `offset`. */
export function encodeSevSignatureSlot(cert: Uint8Array, offset: number, slot: SevSignatureSlot): void {
  writeU32(cert, offset, slot.usage);
  writeU32(cert, offset + 4, slot.algorithm);
  const area = cert.subarray(offset + 8, offset + 8 + SEV_SIG_SIZE);
  area.fill(0);
  const value = slot.value;
  if (value.kind === 'rsa') {
    area.set(bigintToLe(value.s, SEV_SIG_SIZE, 'RSA signature'));
  } else if (value.kind === 'ecdsa') {
    area.set(bigintToLe(value.r, SEV_EC_FIELD_SIZE, 'ECDSA R'), SevEcdsaSigOffset.R);
    area.set(bigintToLe(value.s, SEV_EC_FIELD_SIZE, 'ECDSA S'), SevEcdsaSigOffset.S);
  }
}
