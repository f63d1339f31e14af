import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { readVector } from './__fixtures__/vectors.js';
import { SevAlgorithm, SevCertOffset, SevCurve, SEV_CERT_SIZE, SevUsage } from './constants.js';
import {
  SevInvalidCertificateError,
  SevInvalidLengthError,
  SevReservedBytesError,
  SevTruncatedError,
  SevUnknownAlgorithmError,
  SevUnknownCurveError,
  SevUnknownUsageError,
} from './errors.js';
import { sevPublicKeyFromKeyObject, sevPublicKeyToKeyObject } from './public-key.js';
import { createSevCertificate, decodeSevCertificate, encodeSevCertificate } from './sev-cert.js';

const PLATFORM = ['naples', 'rome'] as const;
const ROLES = [
  ['pdh', SevUsage.PDH, SevAlgorithm.ECDH_SHA256],
  ['pek', SevUsage.PEK, SevAlgorithm.ECDSA_SHA256],
  ['oca', SevUsage.OCA, SevAlgorithm.ECDSA_SHA256],
  ['cek', SevUsage.CEK, SevAlgorithm.ECDSA_SHA256],
] as const;

function mutated(bytes: Buffer, offset: number, value: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[offset] = value;
  return copy;
}

describe('SEV certificate (2084 bytes)', () => {
  describe.each(PLATFORM)('%s platform certificates', (gen) => {
    it.each(ROLES)(
      '%s decodes with the expected usage and algorithm and re-encodes byte for byte',
      (role, usage, algo) => {
        const bytes = readVector(`sev/platform/${gen}/${role}.cert`);
        const cert = decodeSevCertificate(bytes);
        expect(cert.version).toBe(1);
        expect(cert.usage).toBe(usage);
        expect(cert.algorithm).toBe(algo);
        expect(cert.publicKey).toMatchObject({ kind: 'ec', curve: SevCurve.P384 });
        expect(encodeSevCertificate(cert).equals(bytes)).toBe(true);
      },
    );
  });

  it('reads the API version fields (CEK from KDS says 0.14, Naples PDH 0.16, Rome PDH 0.22)', () => {
    const cek = decodeSevCertificate(readVector('sev/platform/naples/cek.cert'));
    expect([cek.apiMajor, cek.apiMinor]).toEqual([0, 14]);
    const naples = decodeSevCertificate(readVector('sev/platform/naples/pdh.cert'));
    expect([naples.apiMajor, naples.apiMinor]).toEqual([0, 16]);
    const rome = decodeSevCertificate(readVector('sev/platform/rome/pdh.cert'));
    expect([rome.apiMajor, rome.apiMinor]).toEqual([0, 22]);
  });

  it('decodes the signature slots: PEK has OCA then CEK, PDH has PEK and an empty slot, CEK an ASK RSA slot', () => {
    const pek = decodeSevCertificate(readVector('sev/platform/rome/pek.cert'));
    expect(pek.signatures.map((s) => [s.usage, s.algorithm, s.value.kind])).toEqual([
      [SevUsage.OCA, SevAlgorithm.ECDSA_SHA256, 'ecdsa'],
      [SevUsage.CEK, SevAlgorithm.ECDSA_SHA256, 'ecdsa'],
    ]);
    const pdh = decodeSevCertificate(readVector('sev/platform/naples/pdh.cert'));
    expect(pdh.signatures[1]).toEqual({
      usage: SevUsage.INVALID,
      algorithm: SevAlgorithm.NONE,
      value: { kind: 'none' },
    });
    const romeCek = decodeSevCertificate(readVector('sev/platform/rome/cek.cert'));
    expect(romeCek.signatures[0]).toMatchObject({ usage: SevUsage.ASK, algorithm: SevAlgorithm.RSA_SHA384 });
    const naplesCek = decodeSevCertificate(readVector('sev/platform/naples/cek.cert'));
    expect(naplesCek.signatures[0]).toMatchObject({
      usage: SevUsage.ASK,
      algorithm: SevAlgorithm.RSA_SHA256,
    });
  });

  const pek = readVector('sev/platform/naples/pek.cert');

  it('rejects truncated input and trailing bytes', () => {
    expect(() => decodeSevCertificate(pek.subarray(0, SEV_CERT_SIZE - 1))).toThrow(SevTruncatedError);
    expect(() => decodeSevCertificate(Buffer.alloc(0))).toThrow(SevTruncatedError);
    expect(() => decodeSevCertificate(Buffer.concat([pek, Buffer.alloc(1)]))).toThrow(SevInvalidLengthError);
  });

  it('rejects a version other than 1', () => {
    expect(() => decodeSevCertificate(mutated(pek, SevCertOffset.VERSION, 2))).toThrow(
      SevInvalidCertificateError,
    );
  });

  it.each([
    ['header reserved byte 0x006', SevCertOffset.RESERVED],
    ['header reserved byte 0x007', SevCertOffset.RESERVED + 1],
    ['EC key reserved area', SevCertOffset.PUB_KEY + 0x094 + 10],
    ['QX padding above 48 bytes', SevCertOffset.PUB_KEY + 0x004 + 48],
    ['ECDSA signature reserved tail', SevCertOffset.SIG1 + 0x090],
  ])('rejects a set %s', (_name, offset) => {
    expect(() => decodeSevCertificate(mutated(pek, offset, 1))).toThrow(SevReservedBytesError);
  });

  it('rejects a non-zero byte in an empty signature slot', () => {
    const pdh = readVector('sev/platform/rome/pdh.cert');
    expect(() => decodeSevCertificate(mutated(pdh, SevCertOffset.SIG2 + 5, 1))).toThrow(
      SevReservedBytesError,
    );
  });

  it('rejects unknown usage, algorithm and curve codes', () => {
    expect(() => decodeSevCertificate(mutated(pek, SevCertOffset.PUB_KEY_USAGE, 0x07))).toThrow(
      SevUnknownUsageError,
    );
    expect(() => decodeSevCertificate(mutated(pek, SevCertOffset.SIG2_USAGE, 0x77))).toThrow(
      SevUnknownUsageError,
    );
    expect(() => decodeSevCertificate(mutated(pek, SevCertOffset.PUB_KEY_ALGO, 0x09))).toThrow(
      SevUnknownAlgorithmError,
    );
    expect(() => decodeSevCertificate(mutated(pek, SevCertOffset.SIG1_ALGO, 0x03))).toThrow(
      SevUnknownAlgorithmError,
    );
    expect(() => decodeSevCertificate(mutated(pek, SevCertOffset.PUB_KEY_ALGO, 0x00))).toThrow(
      SevUnknownAlgorithmError,
    );
    expect(() => decodeSevCertificate(mutated(pek, SevCertOffset.PUB_KEY, 7))).toThrow(SevUnknownCurveError);
  });

  it('round-trips certificates with RSA-2048, RSA-4096 and P-256 keys', () => {
    const keys = [
      [generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey, SevAlgorithm.RSA_SHA256],
      [generateKeyPairSync('rsa', { modulusLength: 4096 }).publicKey, SevAlgorithm.RSA_SHA384],
      [generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey, SevAlgorithm.ECDSA_SHA256],
    ] as const;
    for (const [key, algorithm] of keys) {
      const publicKey = sevPublicKeyFromKeyObject(key);
      const cert = createSevCertificate({
        usage: SevUsage.OCA,
        algorithm,
        publicKey,
        apiMajor: 1,
        apiMinor: 55,
      });
      const bytes = encodeSevCertificate(cert);
      expect(bytes.length).toBe(SEV_CERT_SIZE);
      const back = decodeSevCertificate(bytes);
      expect(back).toEqual(cert);
      expect(encodeSevCertificate(back).equals(bytes)).toBe(true);
      expect(sevPublicKeyToKeyObject(back.publicKey).equals(key)).toBe(true);
    }
  });

  it('refuses to build a certificate whose algorithm does not fit its key', () => {
    const publicKey = sevPublicKeyFromKeyObject(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey);
    expect(() =>
      createSevCertificate({ usage: SevUsage.OCA, algorithm: SevAlgorithm.RSA_SHA256, publicKey }),
    ).toThrow(SevInvalidCertificateError);
  });
});
