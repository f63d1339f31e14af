import { describe, expect, it } from 'vitest';
import { SevInvalidParamError, SevReservedBytesError } from './errors.js';
import { decodeSevGuestPolicy, encodeSevGuestPolicy, SevPolicyBit, sevPolicyValue } from './policy.js';

describe('SEV guest policy', () => {
  it.each([
    [0x0, {}],
    [0x1, { noDebug: true }],
    [0x3, { noDebug: true, noKeySharing: true }],
    [0x5, { noDebug: true, encryptedState: true }],
    [0x8, { noSend: true }],
    [0x30, { domain: true, sev: true }],
    [0x11_00_0001, { noDebug: true, apiMajor: 0, apiMinor: 0x11 }],
    [
      0x17_01_003f,
      {
        noDebug: true,
        noKeySharing: true,
        encryptedState: true,
        noSend: true,
        domain: true,
        sev: true,
        apiMajor: 1,
        apiMinor: 0x17,
      },
    ],
  ])('0x%s round-trips', (value, fields) => {
    const decoded = decodeSevGuestPolicy(value);
    expect(decoded).toMatchObject(fields);
    expect(encodeSevGuestPolicy(decoded)).toBe(value);
    expect(encodeSevGuestPolicy(fields)).toBe(value);
  });

  it('every reserved bit 6..15 is refused', () => {
    for (let bit = 6; bit < 16; bit++) {
      expect(() => decodeSevGuestPolicy(1 << bit)).toThrow(SevReservedBytesError);
      expect(() => sevPolicyValue(SevPolicyBit.NODBG | (1 << bit))).toThrow(SevReservedBytesError);
    }
  });

  it('rejects out-of-range values and API fields', () => {
    expect(() => decodeSevGuestPolicy(-1)).toThrow(SevInvalidParamError);
    expect(() => decodeSevGuestPolicy(2 ** 32)).toThrow(SevInvalidParamError);
    expect(() => encodeSevGuestPolicy({ apiMajor: 256 })).toThrow(SevInvalidParamError);
  });

  it('sevPolicyValue accepts the number or the typed value', () => {
    expect(sevPolicyValue(0x5)).toBe(0x5);
    expect(sevPolicyValue({ noDebug: true, encryptedState: true })).toBe(0x5);
  });
});
