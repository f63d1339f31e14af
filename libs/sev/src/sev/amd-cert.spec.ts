import { describe, expect, it } from 'vitest';
import { readVector } from './__fixtures__/vectors.js';
import { amdCertificateSize, decodeAmdCertificate, encodeAmdCertificate } from './amd-cert.js';
import { AmdCertOffset, SevUsage } from './constants.js';
import {
  SevInvalidCertificateError,
  SevInvalidLengthError,
  SevReservedBytesError,
  SevTruncatedError,
  SevUnknownUsageError,
} from './errors.js';
import { AMD_ROOT_PINS, SEV_GENERATIONS } from './generation.js';

describe('AMD signing-key certificate (ARK / ASK)', () => {
  describe.each(SEV_GENERATIONS)('%s', (gen) => {
    const bits = gen === 'naples' ? 2048 : 4096;
    it.each(['ark', 'ask'] as const)('%s decodes and re-encodes byte for byte', (role) => {
      const bytes = readVector(`sev/amd-ca/${gen}/${role}.cert`);
      const cert = decodeAmdCertificate(bytes);
      expect(cert.usage).toBe(role === 'ark' ? SevUsage.ARK : SevUsage.ASK);
      expect(cert.modulusBits).toBe(bits);
      expect(cert.publicExponentBits).toBe(bits);
      expect(cert.publicExponent).toBe(65537n);
      expect(bytes.length).toBe(amdCertificateSize(cert));
      expect(Buffer.from(cert.keyId).toString('hex')).toBe(
        AMD_ROOT_PINS[gen][role === 'ark' ? 'arkKeyIdHex' : 'askKeyIdHex'],
      );
      expect(Buffer.from(cert.certifyingId).toString('hex')).toBe(AMD_ROOT_PINS[gen].arkKeyIdHex);
      expect(encodeAmdCertificate(cert).equals(bytes)).toBe(true);
    });
  });

  it('Naples ARK as first published (no signature) is truncated; with the known signature it is ark.cert', () => {
    const unsigned = readVector('sev/amd-ca/naples/ark-unsigned-as-published.cert');
    expect(() => decodeAmdCertificate(unsigned)).toThrow(SevTruncatedError);
    const repaired = Buffer.concat([unsigned, readVector('sev/amd-ca/naples/ark-signature-le.bin')]);
    expect(repaired.equals(readVector('sev/amd-ca/naples/ark.cert'))).toBe(true);
    expect(encodeAmdCertificate(decodeAmdCertificate(repaired)).equals(repaired)).toBe(true);
  });

  const ask = readVector('sev/amd-ca/rome/ask.cert');
  const withByte = (offset: number, value: number): Buffer => {
    const copy = Buffer.from(ask);
    copy[offset] = value;
    return copy;
  };
  const withU32 = (offset: number, value: number): Buffer => {
    const copy = Buffer.from(ask);
    copy.writeUInt32LE(value, offset);
    return copy;
  };

  it('rejects truncation anywhere and trailing bytes', () => {
    for (const len of [0, 10, 0x3f, 0x40, 1088, ask.length - 1]) {
      expect(() => decodeAmdCertificate(ask.subarray(0, len))).toThrow(SevTruncatedError);
    }
    expect(() => decodeAmdCertificate(Buffer.concat([ask, Buffer.alloc(4)]))).toThrow(SevInvalidLengthError);
  });

  it('rejects reserved bytes, unknown usage, bad version and unsupported key sizes', () => {
    expect(() => decodeAmdCertificate(withByte(AmdCertOffset.RESERVED + 3, 1))).toThrow(
      SevReservedBytesError,
    );
    expect(() => decodeAmdCertificate(withByte(AmdCertOffset.KEY_USAGE, 0x14))).toThrow(SevUnknownUsageError);
    expect(() => decodeAmdCertificate(withU32(AmdCertOffset.KEY_USAGE, SevUsage.PEK))).toThrow(
      SevInvalidCertificateError,
    );
    expect(() => decodeAmdCertificate(withByte(AmdCertOffset.VERSION, 2))).toThrow(
      SevInvalidCertificateError,
    );
    expect(() => decodeAmdCertificate(withU32(AmdCertOffset.MODULUS_SIZE, 3072))).toThrow(
      SevInvalidCertificateError,
    );
  });
});
