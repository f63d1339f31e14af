import { createPublicKey, type KeyObject } from 'node:crypto';
import { curveByteLength, parseSevCurve, sevAlgorithmKind } from './algorithms.js';
import {
  bigintFromBe,
  bigintFromLe,
  bigintToBe,
  bigintToLe,
  bigintToMinimalBe,
  readU32,
  requireZero,
  writeU32,
} from './bytes.js';
import {
  type SevAlgorithmCode,
  SevCurve,
  type SevCurveId,
  SevEcKeyOffset,
  SEV_EC_FIELD_SIZE,
  SEV_PUB_KEY_SIZE,
  SEV_RSA_FIELD_SIZE,
  SEV_RSA_MAX_BITS,
  SevRsaKeyOffset,
} from './constants.js';
import { SevInvalidCertificateError, SevInvalidParamError, SevUnknownAlgorithmError } from './errors.js';

/** RSA public key from a PUB_KEY area (numbers as values, not as their padded LE fields). */
export interface SevRsaPublicKey {
  readonly kind: 'rsa';
  /** MODULUS_SIZE field, in bits. */
  readonly modulusBits: number;
  readonly exponent: bigint;
  readonly modulus: bigint;
}

/** ECDSA / ECDH public key from a PUB_KEY area. */
export interface SevEcPublicKey {
  readonly kind: 'ec';
  readonly curve: SevCurveId;
  readonly x: bigint;
  readonly y: bigint;
}

/** Either key layout of the 1028-byte PUB_KEY area. */
export type SevPublicKey = SevRsaPublicKey | SevEcPublicKey;

/**
 * Decodes the 1028-byte PUB_KEY area whose layout is chosen by `algorithm`. Checks the EC reserved area
 * and the coordinate padding are zero and the RSA modulus fits its declared size.
 */
export function decodeSevPublicKey(area: Uint8Array, algorithm: SevAlgorithmCode): SevPublicKey {
  const kind = sevAlgorithmKind(algorithm);
  if (kind === 'none') throw new SevUnknownAlgorithmError('PUB_KEY_ALGO', algorithm, 'no key for');
  if (kind === 'rsa') {
    const modulusBits = readU32(area, SevRsaKeyOffset.MODULUS_SIZE);
    if (modulusBits === 0 || modulusBits > SEV_RSA_MAX_BITS || modulusBits % 8 !== 0) {
      throw new SevInvalidCertificateError('PUB_KEY', `RSA MODULUS_SIZE ${modulusBits} bits`);
    }
    const expField = area.subarray(SevRsaKeyOffset.PUB_EXP, SevRsaKeyOffset.PUB_EXP + SEV_RSA_FIELD_SIZE);
    const modField = area.subarray(SevRsaKeyOffset.MODULUS, SevRsaKeyOffset.MODULUS + SEV_RSA_FIELD_SIZE);
    requireZero(modField, modulusBits / 8, SEV_RSA_FIELD_SIZE, 'PUB_KEY.MODULUS padding');
    return { kind: 'rsa', modulusBits, exponent: bigintFromLe(expField), modulus: bigintFromLe(modField) };
  }
  const curve = parseSevCurve(readU32(area, SevEcKeyOffset.CURVE));
  const size = curveByteLength(curve);
  const qx = area.subarray(SevEcKeyOffset.QX, SevEcKeyOffset.QX + SEV_EC_FIELD_SIZE);
  const qy = area.subarray(SevEcKeyOffset.QY, SevEcKeyOffset.QY + SEV_EC_FIELD_SIZE);
  requireZero(qx, size, SEV_EC_FIELD_SIZE, 'PUB_KEY.QX padding');
  requireZero(qy, size, SEV_EC_FIELD_SIZE, 'PUB_KEY.QY padding');
  requireZero(area, SevEcKeyOffset.RESERVED, SEV_PUB_KEY_SIZE, 'PUB_KEY reserved');
  return { kind: 'ec', curve, x: bigintFromLe(qx), y: bigintFromLe(qy) };
}

/** Encodes a key into a fresh 1028-byte PUB_KEY area (little-endian, zero-padded). */
export function encodeSevPublicKey(key: SevPublicKey): Buffer {
  const area = Buffer.alloc(SEV_PUB_KEY_SIZE);
  if (key.kind === 'rsa') {
    writeU32(area, SevRsaKeyOffset.MODULUS_SIZE, key.modulusBits);
    bigintToLe(key.exponent, SEV_RSA_FIELD_SIZE, 'PUB_EXP').copy(area, SevRsaKeyOffset.PUB_EXP);
    bigintToLe(key.modulus, key.modulusBits / 8, 'MODULUS').copy(area, SevRsaKeyOffset.MODULUS);
  } else {
    const size = curveByteLength(key.curve);
    writeU32(area, SevEcKeyOffset.CURVE, key.curve);
    bigintToLe(key.x, size, 'QX').copy(area, SevEcKeyOffset.QX);
    bigintToLe(key.y, size, 'QY').copy(area, SevEcKeyOffset.QY);
  }
  return area;
}

/** DER SubjectPublicKeyInfo up to the uncompressed point, per curve (id-ecPublicKey + named curve). */
const EC_SPKI_PREFIX: Record<SevCurveId, Buffer> = {
  [SevCurve.P256]: Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'),
  [SevCurve.P384]: Buffer.from('3076301006072a8648ce3d020106052b81040022036200', 'hex'),
};

/** Node KeyObject for a PUB_KEY value (RSA, or EC on P-256/P-384). */
export function sevPublicKeyToKeyObject(key: SevPublicKey): KeyObject {
  if (key.kind === 'rsa') {
    return createPublicKey({
      key: {
        kty: 'RSA',
        n: bigintToMinimalBe(key.modulus).toString('base64url'),
        e: bigintToMinimalBe(key.exponent).toString('base64url'),
      },
      format: 'jwk',
    });
  }
  // SPKI DER import is several times cheaper than JWK for EC keys (OpenSSL still checks the point is on
  // the curve when it decodes it).
  const size = curveByteLength(key.curve);
  const point = Buffer.concat([
    Buffer.of(0x04),
    bigintToBe(key.x, size, 'QX'),
    bigintToBe(key.y, size, 'QY'),
  ]);
  return createPublicKey({
    key: Buffer.concat([EC_SPKI_PREFIX[key.curve], point]),
    format: 'der',
    type: 'spki',
  });
}

/** PUB_KEY value of a Node public (or private) key: RSA up to 4096 bits, or EC P-256/P-384. */
export function sevPublicKeyFromKeyObject(keyObject: KeyObject): SevPublicKey {
  const jwk = keyObject.export({ format: 'jwk' });
  const num = (v: string | undefined, name: string): bigint => {
    if (v === undefined) throw new SevInvalidParamError('key', `JWK lacks ${name}`);
    return bigintFromBe(Buffer.from(v, 'base64url'));
  };
  if (jwk.kty === 'RSA') {
    const modulus = num(jwk.n, 'n');
    const modulusBits = Math.ceil(modulus.toString(16).length / 2) * 8;
    if (modulusBits > SEV_RSA_MAX_BITS) throw new SevInvalidParamError('key', 'RSA key too large');
    return { kind: 'rsa', modulusBits, modulus, exponent: num(jwk.e, 'e') };
  }
  if (jwk.kty === 'EC' && (jwk.crv === 'P-384' || jwk.crv === 'P-256')) {
    const curve = jwk.crv === 'P-384' ? SevCurve.P384 : SevCurve.P256;
    return { kind: 'ec', curve, x: num(jwk.x, 'x'), y: num(jwk.y, 'y') };
  }
  throw new SevInvalidParamError('key', `unsupported key type ${jwk.kty} ${jwk.crv ?? ''}`);
}

/** True when two PUB_KEY values denote the same key. */
export function sevPublicKeysEqual(a: SevPublicKey, b: SevPublicKey): boolean {
  if (a.kind === 'rsa' && b.kind === 'rsa') {
    return a.modulusBits === b.modulusBits && a.modulus === b.modulus && a.exponent === b.exponent;
  }
  if (a.kind === 'ec' && b.kind === 'ec') return a.curve === b.curve && a.x === b.x && a.y === b.y;
  return false;
}
