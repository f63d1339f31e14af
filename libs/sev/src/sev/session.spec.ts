import { describe, expect, it } from 'vitest';
import { hex, readSevKats } from './__fixtures__/vectors.js';
import { SevBadMacError, SevInvalidLengthError, SevInvalidParamError, SevTruncatedError } from './errors.js';
import {
  decodeSevSession,
  encodeSevSession,
  SEV_SESSION_SIZE,
  unwrapSevTransportKeys,
  wrapSevTransportKeys,
} from './session.js';

const kats = readSevKats();

describe('session blob (LAUNCH_START / SEND_START / RECEIVE_START)', () => {
  it.each(kats.launch_session)('KAT $name: WRAP_TK, WRAP_MAC, POLICY_MAC and the 128-byte blob', (k) => {
    const session = wrapSevTransportKeys({
      sharedSecret: hex(k.z_hex),
      nonce: hex(k.nonce_hex),
      wrapIv: hex(k.wrap_iv_hex),
      keys: { tek: hex(k.tek_hex), tik: hex(k.tik_hex) },
      policy: k.policy_u32,
    });
    expect(Buffer.from(session.wrapTk).toString('hex')).toBe(k.expected.wrap_tk_hex);
    expect(Buffer.from(session.wrapMac).toString('hex')).toBe(k.expected.wrap_mac_hex);
    expect(Buffer.from(session.policyMac).toString('hex')).toBe(k.expected.policy_mac_hex);
    const blob = encodeSevSession(session);
    expect(blob.toString('hex')).toBe(k.expected.session_blob_128_bytes_hex);
    expect(encodeSevSession(decodeSevSession(blob)).equals(blob)).toBe(true);
    const keys = unwrapSevTransportKeys({
      sharedSecret: hex(k.z_hex),
      session: decodeSevSession(blob),
      policy: k.policy_u32,
    });
    expect(Buffer.from(keys.tek).toString('hex')).toBe(k.tek_hex);
    expect(Buffer.from(keys.tik).toString('hex')).toBe(k.tik_hex);
  });

  const z = Buffer.alloc(48, 0x5a);
  const session = wrapSevTransportKeys({
    sharedSecret: z,
    nonce: Buffer.alloc(16, 1),
    wrapIv: Buffer.alloc(16, 2),
    keys: { tek: Buffer.alloc(16, 3), tik: Buffer.alloc(16, 4) },
    policy: 0x05,
  });

  it('unwrap returns TEK/TIK and checks both MACs', () => {
    const keys = unwrapSevTransportKeys({ sharedSecret: z, session, policy: 0x05 });
    expect(keys).toEqual({ tek: Buffer.alloc(16, 3), tik: Buffer.alloc(16, 4) });
    expect(() => unwrapSevTransportKeys({ sharedSecret: z, session, policy: 0x01 })).toThrow(
      expect.objectContaining({ which: 'POLICY_MAC' }),
    );
    const tampered = { ...session, wrapTk: Buffer.from(session.wrapTk).fill(9, 0, 1) };
    expect(() => unwrapSevTransportKeys({ sharedSecret: z, session: tampered, policy: 0x05 })).toThrow(
      SevBadMacError,
    );
    expect(() => unwrapSevTransportKeys({ sharedSecret: Buffer.alloc(48), session, policy: 0x05 })).toThrow(
      expect.objectContaining({ which: 'WRAP_MAC' }),
    );
  });

  it('rejects wrong blob and field lengths', () => {
    const blob = encodeSevSession(session);
    expect(() => decodeSevSession(blob.subarray(0, SEV_SESSION_SIZE - 1))).toThrow(SevTruncatedError);
    expect(() => decodeSevSession(Buffer.concat([blob, Buffer.alloc(1)]))).toThrow(SevInvalidLengthError);
    expect(() => encodeSevSession({ ...session, nonce: Buffer.alloc(15) })).toThrow(SevInvalidParamError);
    expect(() =>
      wrapSevTransportKeys({
        sharedSecret: z,
        nonce: Buffer.alloc(16),
        wrapIv: Buffer.alloc(16),
        keys: { tek: Buffer.alloc(8), tik: Buffer.alloc(16) },
        policy: 0,
      }),
    ).toThrow(SevInvalidParamError);
  });
});
