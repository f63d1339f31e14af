import { createPublicKey, generateKeyPairSync, verify, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { flipBit, SNP_REPORT_VECTORS, vectorBytes, vectorText } from './__fixtures__/vectors.js';
import { SnpSignatureError, SnpTruncatedInputError } from './errors.js';
import { reportSignedBytes } from './report-decode.js';
import { SNP_REPORT_FIELDS } from './report-layout.js';
import {
  isReportSignatureValid,
  reportSignatureDer,
  reportSignatureP1363,
  signAttestationReport,
  verifyReportSignature,
} from './signature.js';

const cert = (path: string) => new X509Certificate(vectorBytes(path));

function signatureError(fn: () => void): SnpSignatureError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SnpSignatureError) return e;
    throw e;
  }
  throw new Error('expected a signature error');
}

describe('report signature on real reports', () => {
  it.each(SNP_REPORT_VECTORS)('$name verifies with its $kind', (v) => {
    expect(() => verifyReportSignature(vectorBytes(v.report), cert(v.vek))).not.toThrow();
    expect(isReportSignatureValid(vectorBytes(v.report), cert(v.vek).publicKey)).toBe(true);
  });

  it.each(SNP_REPORT_VECTORS)('$name fails with one REPORT_DATA bit flipped', (v) => {
    const bad = flipBit(vectorBytes(v.report), SNP_REPORT_FIELDS.REPORT_DATA[0] + 5, 3);
    expect(signatureError(() => verifyReportSignature(bad, cert(v.vek))).reason).toBe('mismatch');
  });

  it.each(SNP_REPORT_VECTORS)('$name fails with a bit of S flipped', (v) => {
    const bad = flipBit(vectorBytes(v.report), SNP_REPORT_FIELDS.SIGNATURE_S[0], 0);
    expect(isReportSignatureValid(bad, cert(v.vek))).toBe(false);
  });

  it("fails with another chip's VCEK", () => {
    const [a, b] = SNP_REPORT_VECTORS;
    expect(signatureError(() => verifyReportSignature(vectorBytes(a.report), cert(b.vek))).reason).toBe(
      'mismatch',
    );
  });

  it('refuses keys that are not EC P-384', () => {
    const ark = new X509Certificate(vectorText('snp/amd-ca/milan/ark.pem'));
    const p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;
    const milan = vectorBytes(SNP_REPORT_VECTORS[0].report);
    expect(signatureError(() => verifyReportSignature(milan, ark)).reason).toBe('wrong-key-type');
    expect(signatureError(() => verifyReportSignature(milan, p256)).reason).toBe('wrong-key-type');
  });

  it('says a report with MASK_CHIP_KEY set is unsigned', () => {
    const v = SNP_REPORT_VECTORS[0];
    const masked = flipBit(vectorBytes(v.report), SNP_REPORT_FIELDS.KEY_INFO[0], 1);
    expect(signatureError(() => verifyReportSignature(masked, cert(v.vek))).reason).toBe('unsigned');
  });

  it('rejects a truncated report before any crypto', () => {
    const v = SNP_REPORT_VECTORS[0];
    expect(() => verifyReportSignature(vectorBytes(v.report).subarray(0, 0x2a0), cert(v.vek))).toThrow(
      SnpTruncatedInputError,
    );
  });

  it('converts R/S to DER that openssl-style verifiers accept', () => {
    const v = SNP_REPORT_VECTORS[2];
    const report = vectorBytes(v.report);
    const der = reportSignatureDer(report);
    expect(der[0]).toBe(0x30);
    expect(verify('sha384', reportSignedBytes(report), cert(v.vek).publicKey, der)).toBe(true);
    expect(reportSignatureP1363(report)).toHaveLength(96);
  });
});

describe('signAttestationReport', () => {
  it('signs like the AMD-SP: the result verifies, R/S are little-endian in 72-byte fields', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    const body = vectorBytes(SNP_REPORT_VECTORS[0].report);
    const signed = signAttestationReport(body, privateKey);
    expect(() => verifyReportSignature(signed, publicKey)).not.toThrow();
    expect(Buffer.from(signed.subarray(0, 0x2a0)).equals(Buffer.from(body.subarray(0, 0x2a0)))).toBe(true);
    const [rOffset] = SNP_REPORT_FIELDS.SIGNATURE_R;
    expect(signed.subarray(rOffset + 48, rOffset + 72).every((b) => b === 0)).toBe(true);
    expect(signed.subarray(0x330).every((b) => b === 0)).toBe(true);
    expect(
      isReportSignatureValid(
        signed,
        createPublicKey(cert(SNP_REPORT_VECTORS[0].vek).publicKey.export({ format: 'pem', type: 'spki' })),
      ),
    ).toBe(false);
  });

  it('needs a P-384 private key', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    expect(() => signAttestationReport(vectorBytes(SNP_REPORT_VECTORS[0].report), publicKey)).toThrow(
      SnpSignatureError,
    );
  });
});
