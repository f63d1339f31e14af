import { describe, expect, it } from 'vitest';
import { SnpInvalidFieldError, SnpReservedFieldError } from './errors.js';
import { decodeGuestPolicy, encodeGuestPolicy, policyViolations, type SnpGuestPolicy } from './policy.js';

const none: SnpGuestPolicy = {
  abiMajor: 0,
  abiMinor: 0,
  smtAllowed: false,
  migrateMaAllowed: false,
  debugAllowed: false,
  singleSocket: false,
  cxlAllowed: false,
  memAes256Xts: false,
  raplDisabled: false,
  ciphertextHiding: false,
  pageSwapDisabled: false,
};

describe('SNP guest policy', () => {
  it.each([
    [0x30000n, { smtAllowed: true }],
    [0x3001fn, { smtAllowed: true, abiMinor: 0x1f }],
    [0xb0000n, { smtAllowed: true, debugAllowed: true }],
    [0x20000n, {}],
    [0x1f0000n, { smtAllowed: true, migrateMaAllowed: true, debugAllowed: true, singleSocket: true }],
    [
      0x3e20100n,
      {
        abiMajor: 1,
        cxlAllowed: true,
        memAes256Xts: true,
        raplDisabled: true,
        ciphertextHiding: true,
        pageSwapDisabled: true,
      },
    ],
  ])('decodes and re-encodes 0x%s', (value, flags) => {
    const policy = decodeGuestPolicy(value);
    expect(policy).toEqual({ ...none, ...flags });
    expect(encodeGuestPolicy(policy)).toBe(value);
  });

  it('requires reserved bit 17 set and bits 63:26 clear', () => {
    expect(() => decodeGuestPolicy(0x10000n)).toThrow(SnpReservedFieldError);
    expect(() => decodeGuestPolicy(0x20000n | (1n << 26n))).toThrow(SnpReservedFieldError);
    expect(() => decodeGuestPolicy(0x20000n | (1n << 63n))).toThrow(SnpReservedFieldError);
    expect(() => decodeGuestPolicy(1n << 64n)).toThrow(SnpInvalidFieldError);
    expect(() => encodeGuestPolicy({ ...none, abiMajor: 256 })).toThrow(SnpInvalidFieldError);
  });

  it('checks requirements: debug rejected by default, the rest on request', () => {
    expect(policyViolations(decodeGuestPolicy(0x30000n))).toEqual([]);
    expect(policyViolations(decodeGuestPolicy(0xb0000n))).toEqual(['DEBUG is allowed']);
    expect(policyViolations(decodeGuestPolicy(0xb0000n), { allowDebug: true })).toEqual([]);
    expect(
      policyViolations(decodeGuestPolicy(0x70105n), {
        allowSmt: false,
        allowMigrateMa: false,
        requireSingleSocket: true,
        minimumAbi: { major: 1, minor: 51 },
      }),
    ).toEqual([
      'MIGRATE_MA is allowed',
      'SMT is allowed',
      'SINGLE_SOCKET is not set',
      'ABI 1.5 is below 1.51',
    ]);
    expect(
      policyViolations(decodeGuestPolicy(0x1330n | 0x20000n), { minimumAbi: { major: 0x13, minor: 0x30 } }),
    ).toEqual([]);
  });
});
