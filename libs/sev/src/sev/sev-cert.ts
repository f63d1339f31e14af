import { parseSevAlgorithm, parseSevUsage, sevAlgorithmKind, sevUsageName } from './algorithms.js';
import { readU32, requireAtLeast, requireExactLength, requireZero, writeU32 } from './bytes.js';
import {
  type SevAlgorithmCode,
  SEV_CERT_SIGNED_SIZE,
  SEV_CERT_SIZE,
  SEV_CERT_VERSION,
  SevCertOffset,
  SEV_PUB_KEY_SIZE,
  type SevUsageCode,
} from './constants.js';
import { SevInvalidCertificateError, SevInvalidLengthError } from './errors.js';
import { decodeSevPublicKey, encodeSevPublicKey, type SevPublicKey } from './public-key.js';
import {
  decodeSevSignatureSlot,
  EMPTY_SEV_SIGNATURE_SLOT,
  encodeSevSignatureSlot,
  type SevSignatureSlot,
} from './signature-area.js';

/**
 * A decoded 2084-byte SEV certificate (PDH, PEK, OCA, CEK or a guest owner's GODH). Decoding then
 * encoding reproduces the input byte for byte: every field is kept and every reserved byte is zero.
 */
export interface SevCertificate {
  /** VERSION, always 1. */
  readonly version: number;
  /** Firmware API version that generated the certificate (0.0 when not applicable). */
  readonly apiMajor: number;
  readonly apiMinor: number;
  /** PUB_KEY_USAGE: what the key is for. */
  readonly usage: SevUsageCode;
  /** PUB_KEY_ALGO: RSA, ECDSA or ECDH with the hash it signs with. */
  readonly algorithm: SevAlgorithmCode;
  readonly publicKey: SevPublicKey;
  /** SIG1 and SIG2, in slot order. */
  readonly signatures: readonly [SevSignatureSlot, SevSignatureSlot];
}

const SLOT_OFFSETS = [SevCertOffset.SIG1_USAGE, SevCertOffset.SIG2_USAGE] as const;

/** Decodes exactly 2084 bytes; typed errors for truncation, unknown codes and non-zero reserved bytes. */
export function decodeSevCertificate(bytes: Uint8Array): SevCertificate {
  requireExactLength(bytes, SEV_CERT_SIZE, 'SEV certificate');
  return readSevCertificate(bytes, 0);
}

/** Decodes the 2084-byte certificate at `offset` of a longer buffer (bundles, chains). */
export function readSevCertificate(bytes: Uint8Array, offset: number): SevCertificate {
  requireAtLeast(bytes.subarray(offset), SEV_CERT_SIZE, 'SEV certificate');
  const cert = bytes.subarray(offset, offset + SEV_CERT_SIZE);
  const version = readU32(cert, SevCertOffset.VERSION);
  if (version !== SEV_CERT_VERSION) {
    throw new SevInvalidCertificateError('SEV certificate', `VERSION ${version}, expected 1`);
  }
  requireZero(cert, SevCertOffset.RESERVED, SevCertOffset.PUB_KEY_USAGE, 'SEV certificate reserved');
  const usage = parseSevUsage(readU32(cert, SevCertOffset.PUB_KEY_USAGE), 'PUB_KEY_USAGE');
  const algorithm = parseSevAlgorithm(readU32(cert, SevCertOffset.PUB_KEY_ALGO), 'PUB_KEY_ALGO');
  const area = cert.subarray(SevCertOffset.PUB_KEY, SevCertOffset.PUB_KEY + SEV_PUB_KEY_SIZE);
  return {
    version,
    apiMajor: cert[SevCertOffset.API_MAJOR],
    apiMinor: cert[SevCertOffset.API_MINOR],
    usage,
    algorithm,
    publicKey: decodeSevPublicKey(area, algorithm),
    signatures: [
      decodeSevSignatureSlot(cert, SevCertOffset.SIG1_USAGE, 'SIG1'),
      decodeSevSignatureSlot(cert, SevCertOffset.SIG2_USAGE, 'SIG2'),
    ],
  };
}

/** The signed part of a certificate: bytes [0, 0x414), VERSION through PUB_KEY. */
export function encodeSevCertificateBody(cert: SevCertificate): Buffer {
  const kind = sevAlgorithmKind(cert.algorithm);
  if ((kind === 'rsa') !== (cert.publicKey.kind === 'rsa') || kind === 'none') {
    throw new SevInvalidCertificateError(
      'SEV certificate',
      `PUB_KEY_ALGO 0x${cert.algorithm.toString(16)} does not fit a ${cert.publicKey.kind} key`,
    );
  }
  const body = Buffer.alloc(SEV_CERT_SIGNED_SIZE);
  writeU32(body, SevCertOffset.VERSION, cert.version);
  body[SevCertOffset.API_MAJOR] = cert.apiMajor;
  body[SevCertOffset.API_MINOR] = cert.apiMinor;
  writeU32(body, SevCertOffset.PUB_KEY_USAGE, cert.usage);
  writeU32(body, SevCertOffset.PUB_KEY_ALGO, cert.algorithm);
  encodeSevPublicKey(cert.publicKey).copy(body, SevCertOffset.PUB_KEY);
  return body;
}

/** Encodes a certificate to its 2084 bytes. */
export function encodeSevCertificate(cert: SevCertificate): Buffer {
  const out = Buffer.alloc(SEV_CERT_SIZE);
  encodeSevCertificateBody(cert).copy(out, 0);
  cert.signatures.forEach((slot, i) => encodeSevSignatureSlot(out, SLOT_OFFSETS[i], slot));
  return out;
}

/** Parameters of a fresh, unsigned certificate. */
export interface NewSevCertificate {
  readonly usage: SevUsageCode;
  readonly algorithm: SevAlgorithmCode;
  readonly publicKey: SevPublicKey;
  readonly apiMajor?: number;
  readonly apiMinor?: number;
}

/** A version-1 certificate with both signature slots empty (sign it with `signSevCertificate`). */
export function createSevCertificate(params: NewSevCertificate): SevCertificate {
  const cert: SevCertificate = {
    version: SEV_CERT_VERSION,
    apiMajor: params.apiMajor ?? 0,
    apiMinor: params.apiMinor ?? 0,
    usage: params.usage,
    algorithm: params.algorithm,
    publicKey: params.publicKey,
    signatures: [EMPTY_SEV_SIGNATURE_SLOT, EMPTY_SEV_SIGNATURE_SLOT],
  };
  encodeSevCertificateBody(cert); // validates algorithm/key agreement
  return cert;
}

/** Splits a buffer that is a whole number of 2084-byte certificates. */
export function decodeSevCertificates(bytes: Uint8Array, what: string): SevCertificate[] {
  if (bytes.length === 0 || bytes.length % SEV_CERT_SIZE !== 0) {
    throw new SevInvalidLengthError(what, `a multiple of ${SEV_CERT_SIZE}`, bytes.length);
  }
  const out: SevCertificate[] = [];
  for (let off = 0; off < bytes.length; off += SEV_CERT_SIZE) out.push(readSevCertificate(bytes, off));
  return out;
}

/** Throws SevInvalidCertificateError unless the certificate's PUB_KEY_USAGE is `usage`. */
export function requireSevUsage(cert: SevCertificate, usage: SevUsageCode, role: string): void {
  if (cert.usage !== usage) {
    throw new SevInvalidCertificateError(
      role,
      `PUB_KEY_USAGE is ${sevUsageName(cert.usage)}, expected ${sevUsageName(usage)}`,
    );
  }
}
