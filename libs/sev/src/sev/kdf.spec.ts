import { describe, expect, it } from 'vitest';
import { hex, readSevKats } from './__fixtures__/vectors.js';
import { deriveSevSessionKeys, sevKdf, SevKdfLabel } from './kdf.js';
import { computeSevPolicyMac } from './session.js';
import { sevHmacSha256 } from './transport-crypto.js';

const kats = readSevKats();

describe('SEV KDF (SP 800-108 counter mode, little-endian counter and length)', () => {
  it('KAT kdf-zero-key-master-secret', () => {
    const k = kats.kdf[0];
    expect(sevKdf(hex(k.key_in_hex), k.label, hex(k.context_hex), k.out_len_bytes).toString('hex')).toBe(
      k.expected_hex,
    );
  });

  it('KAT KEK / KIK from that master secret', () => {
    const k = kats.kdf[1];
    expect(sevKdf(hex(k.master_hex), k.kek_label, Buffer.alloc(0), 16).toString('hex')).toBe(k.kek_hex);
    expect(sevKdf(hex(k.master_hex), k.kik_label, Buffer.alloc(0), 16).toString('hex')).toBe(k.kik_hex);
    const keys = deriveSevSessionKeys(hex(kats.kdf[0].key_in_hex), hex(kats.kdf[0].context_hex));
    expect([keys.masterSecret, keys.kek, keys.kik].map((b) => b.toString('hex'))).toEqual([
      k.master_hex,
      k.kek_hex,
      k.kik_hex,
    ]);
  });

  it('a big-endian counter would not match (guards the byte order)', () => {
    const k = kats.kdf[0];
    const be = sevHmacSha256(
      hex(k.key_in_hex),
      Buffer.from([0, 0, 0, 1]),
      Buffer.from(`${SevKdfLabel.MASTER_SECRET}\0`),
      hex(k.context_hex),
      Buffer.from([0, 0, 0, 128]),
    );
    expect(be.subarray(0, 16).toString('hex')).not.toBe(k.expected_hex);
  });

  it('multi-block output: blocks are K(1) ‖ K(2) and prefixes agree only per length', () => {
    const key = Buffer.alloc(48, 3);
    const long = sevKdf(key, 'x', Buffer.alloc(0), 40);
    expect(long.length).toBe(40);
    // L is part of every block, so a 16-byte output is not a prefix of a 40-byte one
    expect(sevKdf(key, 'x', Buffer.alloc(0), 16).equals(long.subarray(0, 16))).toBe(false);
  });

  it.each(kats.hmac)('KAT HMAC $msg_hex (== POLICY_MAC of policy 0 with TIK 0)', (k) => {
    expect(sevHmacSha256(hex(k.key_hex), hex(k.msg_hex)).toString('hex')).toBe(k.expected_hex);
    expect(computeSevPolicyMac(hex(k.key_hex), 0).toString('hex')).toBe(k.expected_hex);
  });
});
