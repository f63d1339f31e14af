import { constants, type KeyObject, sign, verify } from 'node:crypto';
import {
  curveByteLength,
  hashLength,
  rsaAlgorithmForBits,
  sevAlgorithmHash,
  sevAlgorithmKind,
  sevAlgorithmName,
  sevUsageName,
  type SevHashName,
} from './algorithms.js';
import {
  amdCertificatePublicKey,
  encodeAmdCertificateBody,
  type AmdSigningKeyCertificate,
} from './amd-cert.js';
import { bigintFromBe, bigintToBe } from './bytes.js';
import { type SevAlgorithmCode, SevUsage, type SevUsageCode } from './constants.js';
import {
  SevBadSignatureError,
  SevInvalidParamError,
  SevMissingSignatureError,
  SevWrongGenerationError,
} from './errors.js';
import { sevPublicKeyFromKeyObject, sevPublicKeyToKeyObject, type SevPublicKey } from './public-key.js';
import { encodeSevCertificateBody, type SevCertificate } from './sev-cert.js';
import type { SevSignatureSlot, SevSignatureValue } from './signature-area.js';

/** A key that signs SEV certificates: its usage/algorithm select the slot, its public key verifies it. */
export interface SevSigner {
  readonly usage: SevUsageCode;
  readonly algorithm: SevAlgorithmCode;
  readonly publicKey: SevPublicKey;
}

/** The signer described by a SEV certificate (an OCA, CEK or PEK certificate). */
export function sevSignerOf(cert: SevCertificate): SevSigner {
  return { usage: cert.usage, algorithm: cert.algorithm, publicKey: cert.publicKey };
}

/** The ASK as the signer of a CEK: usage ASK, RSA-PSS with SHA-256 (2048-bit) or SHA-384 (4096-bit). */
export function sevSignerOfAmdKey(cert: AmdSigningKeyCertificate): SevSigner {
  return {
    usage: cert.usage,
    algorithm: rsaAlgorithmForBits(cert.modulusBits),
    publicKey: amdCertificatePublicKey(cert),
  };
}

const keyCache = new WeakMap<SevPublicKey, KeyObject>();
function keyObjectOf(key: SevPublicKey): KeyObject {
  let obj = keyCache.get(key);
  if (!obj) {
    obj = sevPublicKeyToKeyObject(key);
    keyCache.set(key, obj);
  }
  return obj;
}

/** Checks a raw signature value over `data` with `key`; false (never a throw) when it does not verify. */
export function verifySevSignatureValue(
  key: SevPublicKey,
  hash: SevHashName,
  data: Uint8Array,
  value: SevSignatureValue,
): boolean {
  try {
    if (value.kind === 'rsa' && key.kind === 'rsa') {
      const sig = bigintToBe(value.s, key.modulusBits / 8);
      const opts = {
        key: keyObjectOf(key),
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: hashLength(hash),
      };
      return verify(hash, data, opts, sig);
    }
    if (value.kind === 'ecdsa' && key.kind === 'ec') {
      const size = curveByteLength(key.curve);
      const sig = Buffer.concat([bigintToBe(value.r, size), bigintToBe(value.s, size)]);
      return verify(hash, data, { key: keyObjectOf(key), dsaEncoding: 'ieee-p1363' }, sig);
    }
    return false;
  } catch {
    return false; // an out-of-range R/S or signature integer is simply a bad signature
  }
}

/** Makes a raw signature value over `data`: RSA-PSS (salt = hash length) or ECDSA. */
export function makeSevSignatureValue(
  privateKey: KeyObject,
  hash: SevHashName,
  data: Uint8Array,
): SevSignatureValue {
  if (privateKey.asymmetricKeyType === 'rsa') {
    const opts = { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: hashLength(hash) };
    return { kind: 'rsa', s: bigintFromBe(sign(hash, data, opts)) };
  }
  if (privateKey.asymmetricKeyType === 'ec') {
    const sig = sign(hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    const half = sig.length / 2;
    return { kind: 'ecdsa', r: bigintFromBe(sig.subarray(0, half)), s: bigintFromBe(sig.subarray(half)) };
  }
  throw new SevInvalidParamError('privateKey', `unsupported key type ${privateKey.asymmetricKeyType}`);
}

/** Index of the slot signed by `signer` (matching usage), preferring one whose algorithm also matches. */
function findSlot(cert: SevCertificate, usage: SevUsageCode, algorithm: SevAlgorithmCode): number {
  const exact = cert.signatures.findIndex((s) => s.usage === usage && s.algorithm === algorithm);
  return exact >= 0 ? exact : cert.signatures.findIndex((s) => s.usage === usage);
}

/**
 * Verifies that `signer` signed `cert` (bytes [0, 0x414)). The slot is the one whose SIGn_USAGE equals
 * the signer's usage, so PEK slots may come in either order. Throws SevMissingSignatureError (no slot),
 * SevWrongGenerationError (an ASK whose RSA size does not match the slot's hash) or SevBadSignatureError.
 */
export function verifySevCertificateSignature(cert: SevCertificate, signer: SevSigner): void {
  const subject = sevUsageName(cert.usage);
  const signerName = sevUsageName(signer.usage);
  const index = findSlot(cert, signer.usage, signer.algorithm);
  if (index < 0) throw new SevMissingSignatureError(subject, signerName);
  const slot: SevSignatureSlot = cert.signatures[index];
  if (slot.algorithm !== signer.algorithm) {
    const detail = `slot algorithm ${sevAlgorithmName(slot.algorithm)} but ${signerName} signs with ${sevAlgorithmName(signer.algorithm)}`;
    if (signer.usage === SevUsage.ASK) throw new SevWrongGenerationError(subject, detail);
    throw new SevBadSignatureError(subject, signerName, detail);
  }
  const hash = sevAlgorithmHash(slot.algorithm);
  if (!verifySevSignatureValue(signer.publicKey, hash, encodeSevCertificateBody(cert), slot.value)) {
    throw new SevBadSignatureError(subject, signerName);
  }
}

/** A private key together with the usage and algorithm it signs as. */
export interface SevSigningKey {
  readonly usage: SevUsageCode;
  readonly algorithm: SevAlgorithmCode;
  readonly privateKey: KeyObject;
}

/** A copy of `cert` with signature slot `slot` (0 = SIG1, 1 = SIG2) made by `key`. */
export function signSevCertificate(cert: SevCertificate, slot: 0 | 1, key: SevSigningKey): SevCertificate {
  const kind = sevAlgorithmKind(key.algorithm);
  if (kind !== 'rsa' && kind !== 'ecdsa') {
    throw new SevInvalidParamError('algorithm', `${sevAlgorithmName(key.algorithm)} cannot sign`);
  }
  const value = makeSevSignatureValue(
    key.privateKey,
    sevAlgorithmHash(key.algorithm),
    encodeSevCertificateBody(cert),
  );
  const filled: SevSignatureSlot = { usage: key.usage, algorithm: key.algorithm, value };
  const signatures: [SevSignatureSlot, SevSignatureSlot] = [cert.signatures[0], cert.signatures[1]];
  signatures[slot] = filled;
  return { ...cert, signatures };
}

/** RSA-PSS hash AMD uses for a signer modulus size (SHA-256 for 2048 bits, SHA-384 above). */
export function amdSignatureHash(signerModulusBits: number): SevHashName {
  return sevAlgorithmHash(rsaAlgorithmForBits(signerModulusBits));
}

/**
 * Verifies an ARK/ASK signature with `signer` (the ARK): RSASSA-PSS, MGF1 and salt per the signer's
 * modulus size. Throws SevBadSignatureError.
 */
export function verifyAmdCertificateSignature(
  cert: AmdSigningKeyCertificate,
  signer: AmdSigningKeyCertificate,
): void {
  const key = amdCertificatePublicKey(signer);
  const ok = verifySevSignatureValue(
    key,
    amdSignatureHash(signer.modulusBits),
    encodeAmdCertificateBody(cert),
    {
      kind: 'rsa',
      s: cert.signature,
    },
  );
  if (!ok) throw new SevBadSignatureError(sevUsageName(cert.usage), sevUsageName(signer.usage));
}

/** A copy of `cert` signed by the RSA `privateKey` (test roots and the emulator's own ARK/ASK). */
export function signAmdCertificate(
  cert: AmdSigningKeyCertificate,
  privateKey: KeyObject,
): AmdSigningKeyCertificate {
  const key = sevPublicKeyFromKeyObject(privateKey);
  if (key.kind !== 'rsa')
    throw new SevInvalidParamError('privateKey', 'AMD certificates are signed with RSA');
  const value = makeSevSignatureValue(
    privateKey,
    amdSignatureHash(key.modulusBits),
    encodeAmdCertificateBody(cert),
  );
  if (value.kind !== 'rsa') throw new SevInvalidParamError('privateKey', 'expected an RSA signature');
  return { ...cert, signature: value.s };
}
