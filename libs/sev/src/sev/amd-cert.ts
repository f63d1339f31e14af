import { parseSevUsage, sevUsageName } from './algorithms.js';
import {
  bigintFromLe,
  bigintToLe,
  readU32,
  requireAtLeast,
  requireExactLength,
  requireZero,
  writeU32,
} from './bytes.js';
import {
  AMD_CERT_HEADER_SIZE,
  AMD_CERT_VERSION,
  AMD_KEY_ID_SIZE,
  AMD_RSA_SIZES_BITS,
  AmdCertOffset,
  SevUsage,
} from './constants.js';
import { SevInvalidCertificateError, SevInvalidParamError } from './errors.js';
import type { SevRsaPublicKey } from './public-key.js';

/**
 * A decoded AMD signing-key certificate (ARK or ASK, SEV API appendix B.1): 832 bytes for AMD's 2048-bit
 * keys (Naples), 1600 bytes for 4096-bit keys (Rome and later). Decode then encode is byte-exact.
 */
export interface AmdSigningKeyCertificate {
  readonly version: number;
  /** KEY_ID: 16 raw bytes identifying this key. */
  readonly keyId: Uint8Array;
  /** CERTIFYING_ID: KEY_ID of the signer (equal to KEY_ID for the self-signed ARK). */
  readonly certifyingId: Uint8Array;
  /** KEY_USAGE: ARK (0x00) or ASK (0x13). */
  readonly usage: typeof SevUsage.ARK | typeof SevUsage.ASK;
  /** PUB_EXP_SIZE in bits (also the width of the exponent field). */
  readonly publicExponentBits: number;
  /** MODULUS_SIZE in bits (also the width of the modulus and signature fields). */
  readonly modulusBits: number;
  readonly publicExponent: bigint;
  readonly modulus: bigint;
  /** RSASSA-PSS signature by the ARK, as an integer. */
  readonly signature: bigint;
}

function checkSize(bits: number, field: string): void {
  if (!(AMD_RSA_SIZES_BITS as readonly number[]).includes(bits)) {
    throw new SevInvalidCertificateError('AMD certificate', `${field} ${bits} bits, expected 2048 or 4096`);
  }
}

/** Total encoded size for the given field sizes: 0x40 + E + 2M. */
export function amdCertificateSize(
  cert: Pick<AmdSigningKeyCertificate, 'publicExponentBits' | 'modulusBits'>,
): number {
  return AMD_CERT_HEADER_SIZE + cert.publicExponentBits / 8 + (2 * cert.modulusBits) / 8;
}

/** Decodes one certificate at `offset` of a longer buffer and says how many bytes it took. */
export function readAmdCertificate(
  bytes: Uint8Array,
  offset = 0,
): { readonly certificate: AmdSigningKeyCertificate; readonly size: number } {
  const b = bytes.subarray(offset);
  requireAtLeast(b, AMD_CERT_HEADER_SIZE, 'AMD certificate header');
  const version = readU32(b, AmdCertOffset.VERSION);
  if (version !== AMD_CERT_VERSION) {
    throw new SevInvalidCertificateError('AMD certificate', `VERSION ${version}, expected 1`);
  }
  const usage = parseSevUsage(readU32(b, AmdCertOffset.KEY_USAGE), 'KEY_USAGE');
  if (usage !== SevUsage.ARK && usage !== SevUsage.ASK) {
    throw new SevInvalidCertificateError(
      'AMD certificate',
      `KEY_USAGE ${sevUsageName(usage)} is not ARK/ASK`,
    );
  }
  requireZero(b, AmdCertOffset.RESERVED, AmdCertOffset.PUB_EXP_SIZE, 'AMD certificate reserved');
  const publicExponentBits = readU32(b, AmdCertOffset.PUB_EXP_SIZE);
  const modulusBits = readU32(b, AmdCertOffset.MODULUS_SIZE);
  checkSize(publicExponentBits, 'PUB_EXP_SIZE');
  checkSize(modulusBits, 'MODULUS_SIZE');
  const size = amdCertificateSize({ publicExponentBits, modulusBits });
  requireAtLeast(b, size, `AMD ${sevUsageName(usage)} certificate (${modulusBits}-bit)`);
  const expEnd = AmdCertOffset.PUB_EXP + publicExponentBits / 8;
  const modEnd = expEnd + modulusBits / 8;
  const certificate: AmdSigningKeyCertificate = {
    version,
    keyId: Uint8Array.from(b.subarray(AmdCertOffset.KEY_ID, AmdCertOffset.KEY_ID + AMD_KEY_ID_SIZE)),
    certifyingId: Uint8Array.from(
      b.subarray(AmdCertOffset.CERTIFYING_ID, AmdCertOffset.CERTIFYING_ID + AMD_KEY_ID_SIZE),
    ),
    usage,
    publicExponentBits,
    modulusBits,
    publicExponent: bigintFromLe(b.subarray(AmdCertOffset.PUB_EXP, expEnd)),
    modulus: bigintFromLe(b.subarray(expEnd, modEnd)),
    signature: bigintFromLe(b.subarray(modEnd, size)),
  };
  return { certificate, size };
}

/** Decodes exactly one certificate (trailing bytes are an INVALID_LENGTH error). */
export function decodeAmdCertificate(bytes: Uint8Array): AmdSigningKeyCertificate {
  const { certificate, size } = readAmdCertificate(bytes);
  requireExactLength(bytes, size, 'AMD certificate');
  return certificate;
}

/** The signed part: header, exponent and modulus (everything before SIGNATURE). */
export function encodeAmdCertificateBody(cert: AmdSigningKeyCertificate): Buffer {
  checkSize(cert.publicExponentBits, 'PUB_EXP_SIZE');
  checkSize(cert.modulusBits, 'MODULUS_SIZE');
  if (cert.keyId.length !== AMD_KEY_ID_SIZE || cert.certifyingId.length !== AMD_KEY_ID_SIZE) {
    throw new SevInvalidParamError('AMD certificate', 'KEY_ID and CERTIFYING_ID must be 16 bytes');
  }
  const e = cert.publicExponentBits / 8;
  const m = cert.modulusBits / 8;
  const body = Buffer.alloc(AMD_CERT_HEADER_SIZE + e + m);
  writeU32(body, AmdCertOffset.VERSION, cert.version);
  body.set(cert.keyId, AmdCertOffset.KEY_ID);
  body.set(cert.certifyingId, AmdCertOffset.CERTIFYING_ID);
  writeU32(body, AmdCertOffset.KEY_USAGE, cert.usage);
  writeU32(body, AmdCertOffset.PUB_EXP_SIZE, cert.publicExponentBits);
  writeU32(body, AmdCertOffset.MODULUS_SIZE, cert.modulusBits);
  body.set(bigintToLe(cert.publicExponent, e, 'PUB_EXP'), AmdCertOffset.PUB_EXP);
  body.set(bigintToLe(cert.modulus, m, 'MODULUS'), AmdCertOffset.PUB_EXP + e);
  return body;
}

/** Encodes the whole certificate (body followed by the little-endian signature). */
export function encodeAmdCertificate(cert: AmdSigningKeyCertificate): Buffer {
  const sig = bigintToLe(cert.signature, cert.modulusBits / 8, 'SIGNATURE');
  return Buffer.concat([encodeAmdCertificateBody(cert), sig]);
}

const publicKeys = new WeakMap<AmdSigningKeyCertificate, SevRsaPublicKey>();

/**
 * The certificate's RSA key in the PUB_KEY model shared with SEV certificates (one object per
 * certificate object, so the Node key built from it is cached across verifications).
 */
export function amdCertificatePublicKey(cert: AmdSigningKeyCertificate): SevRsaPublicKey {
  let key = publicKeys.get(cert);
  if (!key || key.modulus !== cert.modulus || key.modulusBits !== cert.modulusBits) {
    key = {
      kind: 'rsa',
      modulusBits: cert.modulusBits,
      modulus: cert.modulus,
      exponent: cert.publicExponent,
    };
    publicKeys.set(cert, key);
  }
  return key;
}
