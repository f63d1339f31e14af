import { describe, expect, it } from 'vitest';
import { vectorBytes, vectorText } from './__fixtures__/vectors.js';
import { decodeOid, decodeSmallUint, decodeTime, DER_TAG, readNode } from './der.js';
import { SnpCertificateError } from './errors.js';
import { certificateFields, parsePemBundle, toX509, X509_OID } from './x509.js';

const amdPss = {
  hashOid: X509_OID.sha384,
  mgfOid: X509_OID.mgf1,
  mgfHashOid: X509_OID.sha384,
  saltLength: 48,
  trailerField: 1,
};

describe('certificateFields', () => {
  it('reads RSASSA-PSS parameters whether or not the default trailerField is encoded', () => {
    // AMD's CA certificates spell out trailerField [3] INTEGER 1; the VCEKs/VLEKs omit it.
    const ark = certificateFields(vectorText('snp/amd-ca/milan/ark.pem'));
    const vcek = certificateFields(vectorBytes('snp/certs/virtee-turin-vcek/vcek_turin.der'));
    for (const f of [ark, vcek]) {
      expect(f.signatureAlgorithm).toEqual({ oid: X509_OID.rsassaPss, pss: amdPss });
      expect(f.tbsSignatureAlgorithm).toEqual(f.signatureAlgorithm);
    }
  });

  it('reads names, validity and extensions', () => {
    const vlek = certificateFields(vectorBytes('snp/reports/trustee-milan-vlek/vlek.der'));
    expect([vlek.subjectCommonName, vlek.issuerCommonName]).toEqual(['SEV-VLEK', 'SEV-VLEK-Milan']);
    expect(vlek.notBefore.toISOString()).toBe('2024-12-10T22:14:21.000Z');
    expect(vlek.notAfter.toISOString()).toBe('2025-12-10T22:14:21.000Z');
    expect(vlek.extensions.get('1.3.6.1.4.1.3704.1.3.8')?.value).toEqual(Uint8Array.from([2, 2, 0, 0xd9]));
    const ark = certificateFields(vectorText('snp/amd-ca/genoa/ark.pem'));
    expect(ark.subjectCommonName).toBe('ARK-Genoa');
    expect(Buffer.from(ark.issuerDer).equals(Buffer.from(ark.subjectDer))).toBe(true);
  });

  it('turns unreadable input into SnpCertificateError', () => {
    expect(() => toX509(new Uint8Array([0x30, 0x03, 1, 2, 3]), 'VCEK')).toThrow(SnpCertificateError);
    expect(() => parsePemBundle('no pem here')).toThrow(SnpCertificateError);
    expect(parsePemBundle(vectorText('snp/amd-ca/turin/ask_ark_asvk.pem'))).toHaveLength(3);
  });
});

describe('DER reader', () => {
  it('decodes OIDs, small integers and both time forms', () => {
    expect(decodeOid(Uint8Array.from([0x2b, 0x06, 0x01, 0x04, 0x01, 0x9c, 0x78, 0x01, 0x03, 0x08]))).toBe(
      '1.3.6.1.4.1.3704.1.3.8',
    );
    expect(decodeOid(Uint8Array.from([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]))).toBe(
      X509_OID.rsassaPss,
    );
    expect(decodeSmallUint(Uint8Array.from([0x00, 0xd9]), 'x')).toBe(0xd9);
    expect(() => decodeSmallUint(Uint8Array.from([0xff]), 'x')).toThrow(SnpCertificateError);
    const time = (tag: number, text: string) => {
      const bytes = Uint8Array.from([tag, text.length, ...Buffer.from(text, 'latin1')]);
      return decodeTime(bytes, readNode(bytes, 0)).toISOString();
    };
    expect(time(DER_TAG.UTC_TIME, '491231235959Z')).toBe('2049-12-31T23:59:59.000Z');
    expect(time(DER_TAG.UTC_TIME, '500101000000Z')).toBe('1950-01-01T00:00:00.000Z');
    expect(time(DER_TAG.GENERALIZED_TIME, '20451022172305Z')).toBe('2045-10-22T17:23:05.000Z');
    expect(() => time(DER_TAG.UTC_TIME, '2401010000Z')).toThrow(SnpCertificateError);
  });

  it('rejects lengths that run past the buffer or use indefinite form', () => {
    expect(() => readNode(Uint8Array.from([0x30, 0x05, 0x00]), 0)).toThrow(SnpCertificateError);
    expect(() => readNode(Uint8Array.from([0x30, 0x80, 0x00, 0x00]), 0)).toThrow(SnpCertificateError);
    expect(() => readNode(Uint8Array.from([0x30, 0x82, 0x01]), 0)).toThrow(SnpCertificateError);
    expect(readNode(Uint8Array.from([0x04, 0x81, 0x01, 0xaa]), 0)).toEqual({
      tag: 4,
      start: 0,
      contentStart: 3,
      end: 4,
    });
  });
});
