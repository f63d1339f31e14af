import { type KeyObject, sign, verify, X509Certificate } from 'node:crypto';
import { readU32, reversed } from './bytes.js';
import { SnpSignatureError } from './errors.js';
import {
  P384_SCALAR_SIZE,
  SNP_KEY_INFO,
  SNP_REPORT_FIELDS as F,
  SNP_SIGNATURE_ALGO_ECDSA_P384_SHA384,
} from './report-layout.js';
import { reportSignedBytes } from './report-decode.js';

/** Hash of the report signature (SNP ABI: ECDSA P-384 with SHA-384). */
export const SNP_REPORT_SIGNATURE_HASH = 'sha384';
/** Node's name of the P-384 curve. */
export const P384_CURVE = 'secp384r1';

function publicKeyOf(key: KeyObject | X509Certificate): KeyObject {
  return key instanceof X509Certificate ? key.publicKey : key;
}

function requireP384(key: KeyObject, kind: 'public' | 'private'): void {
  if (
    key.type !== kind ||
    key.asymmetricKeyType !== 'ec' ||
    key.asymmetricKeyDetails?.namedCurve !== P384_CURVE
  ) {
    const got =
      `${key.type} ${key.asymmetricKeyType ?? '?'} ${key.asymmetricKeyDetails?.namedCurve ?? ''}`.trim();
    throw new SnpSignatureError('wrong-key-type', `needs an EC P-384 ${kind} key, got ${got}`);
  }
}

/**
 * The report signature as IEEE P1363 `r || s` (96 bytes, big-endian), the form Node and WebCrypto
 * verify: the low 48 bytes of each 72-byte little-endian field, reversed.
 */
export function reportSignatureP1363(report: Uint8Array): Uint8Array {
  reportSignedBytes(report);
  const out = new Uint8Array(2 * P384_SCALAR_SIZE);
  out.set(reversed(report.subarray(F.SIGNATURE_R[0], F.SIGNATURE_R[0] + P384_SCALAR_SIZE)), 0);
  out.set(reversed(report.subarray(F.SIGNATURE_S[0], F.SIGNATURE_S[0] + P384_SCALAR_SIZE)), P384_SCALAR_SIZE);
  return out;
}

function derInteger(bigEndian: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bigEndian.length - 1 && bigEndian[i] === 0) i++;
  const body = bigEndian.subarray(i);
  const pad = body[0] & 0x80 ? 1 : 0;
  const out = new Uint8Array(2 + pad + body.length);
  out[0] = 0x02;
  out[1] = pad + body.length;
  out.set(body, 2 + pad);
  return out;
}

/** The report signature as a DER `ECDSA-Sig-Value` (what `openssl dgst -verify` reads). */
export function reportSignatureDer(report: Uint8Array): Uint8Array {
  const p1363 = reportSignatureP1363(report);
  const r = derInteger(p1363.subarray(0, P384_SCALAR_SIZE));
  const s = derInteger(p1363.subarray(P384_SCALAR_SIZE));
  // Two P-384 INTEGERs are at most 2 × 51 bytes, so the SEQUENCE length always fits the short form.
  return Uint8Array.from([0x30, r.length + s.length, ...r, ...s]);
}

/**
 * Verifies a raw 1184-byte report's ECDSA P-384/SHA-384 signature over bytes [0, 0x2A0) with a VCEK or
 * VLEK public key (or its certificate). Throws {@link SnpSignatureError} on any failure.
 */
export function verifyReportSignature(report: Uint8Array, key: KeyObject | X509Certificate): void {
  const signed = reportSignedBytes(report);
  const algo = readU32(report, F.SIGNATURE_ALGO[0]);
  if (algo !== SNP_SIGNATURE_ALGO_ECDSA_P384_SHA384) {
    throw new SnpSignatureError('unsupported-algorithm', `SIGNATURE_ALGO ${algo}`);
  }
  if ((readU32(report, F.KEY_INFO[0]) >> SNP_KEY_INFO.maskChipKeyBit) & 1) {
    throw new SnpSignatureError(
      'unsigned',
      'KEY_INFO.MASK_CHIP_KEY is set: the firmware did not sign this report',
    );
  }
  const publicKey = publicKeyOf(key);
  requireP384(publicKey, 'public');
  let ok: boolean;
  try {
    ok = verify(
      SNP_REPORT_SIGNATURE_HASH,
      signed,
      { key: publicKey, dsaEncoding: 'ieee-p1363' },
      reportSignatureP1363(report),
    );
  } catch (cause) {
    throw new SnpSignatureError('malformed', 'signature could not be checked', { cause });
  }
  if (!ok) throw new SnpSignatureError('mismatch', 'does not verify with the given key');
}

/** Boolean form of {@link verifyReportSignature}: false instead of a signature error. */
export function isReportSignatureValid(report: Uint8Array, key: KeyObject | X509Certificate): boolean {
  try {
    verifyReportSignature(report, key);
    return true;
  } catch (err) {
    if (err instanceof SnpSignatureError) return false;
    throw err;
  }
}

/**
 * Signs a report the way the AMD-SP does (for the emulator and tests): returns a copy of `report` with
 * SIGNATURE_ALGO = 1 and R/S written little-endian into their 72-byte fields. `report` must be 1184 bytes.
 */
export function signAttestationReport(report: Uint8Array, privateKey: KeyObject): Uint8Array {
  reportSignedBytes(report);
  requireP384(privateKey, 'private');
  const out = Uint8Array.from(report);
  new DataView(out.buffer).setUint32(F.SIGNATURE_ALGO[0], SNP_SIGNATURE_ALGO_ECDSA_P384_SHA384, true);
  const sig = sign(SNP_REPORT_SIGNATURE_HASH, reportSignedBytes(out), {
    key: privateKey,
    dsaEncoding: 'ieee-p1363',
  });
  out.fill(0, F.SIGNATURE_R[0]);
  out.set(reversed(sig.subarray(0, P384_SCALAR_SIZE)), F.SIGNATURE_R[0]);
  out.set(reversed(sig.subarray(P384_SCALAR_SIZE)), F.SIGNATURE_S[0]);
  return out;
}
