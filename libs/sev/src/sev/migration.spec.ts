import { describe, expect, it } from 'vitest';
import { realChain, syntheticChain } from './__fixtures__/chains.js';
import { verifySevChain } from './chain.js';
import { SevBadSignatureError, SevPolicyError, SevUntrustedRootError } from './errors.js';
import { openSevTransportSession } from './key-agreement.js';
import {
  decodeQemuSevMigrationParameters,
  encodeQemuSevMigrationParameters,
  sevMigrationPolicyViolations,
  startSevSend,
} from './migration.js';
import { openSevPacket, sealSevPacket, SevPacketContext } from './packet.js';
import { encodeSevCertificate } from './sev-cert.js';
import { decodeSevSession } from './session.js';

describe('migration transport', () => {
  it('QEMU migrate-set-parameters fields for a real Rome target round-trip and still verify', () => {
    const target = realChain('rome');
    const params = encodeQemuSevMigrationParameters(target);
    expect(Buffer.from(params['sev-plat-cert'], 'base64').length).toBe(3 * 2084);
    expect(Buffer.from(params['sev-amd-cert'], 'base64').length).toBe(3200);
    const back = decodeQemuSevMigrationParameters(params);
    expect(encodeSevCertificate(back.pdh).equals(encodeSevCertificate(target.pdh))).toBe(true);
    expect(verifySevChain(back)).toMatchObject({ ok: true, generation: 'rome' });
  });

  const target = syntheticChain();
  const source = syntheticChain();
  const roots = { extraRoots: [{ ark: target.chain.ark, generation: 'naples' as const }] };

  it('policy: NOSEND, DOMAIN and API minimum', () => {
    const context = { target: target.chain, sourceOca: source.chain.oca };
    expect(sevMigrationPolicyViolations(0x1, context)).toEqual([]);
    expect(sevMigrationPolicyViolations(0x8, context)).toEqual([expect.stringContaining('NOSEND')]);
    expect(sevMigrationPolicyViolations(0x10, context)).toEqual([expect.stringContaining('DOMAIN')]);
    expect(sevMigrationPolicyViolations(0x10, { ...context, sourceOca: target.chain.oca })).toEqual([]);
    // the synthetic PEK says API 1.55
    expect(sevMigrationPolicyViolations((55 << 24) | (1 << 16), context)).toEqual([]);
    expect(sevMigrationPolicyViolations((56 << 24) | (1 << 16), context)).toEqual([
      expect.stringContaining('API'),
    ]);
  });

  it('SEND_START → RECEIVE_START: the target recovers the keys and opens transport packets', () => {
    const send = startSevSend({
      sourcePdhPrivateKey: source.keys.pdh,
      policy: 0x1,
      context: { target: target.chain },
      chainOptions: roots,
    });
    const keys = openSevTransportSession({
      privateKey: target.keys.pdh,
      peer: source.chain.pdh,
      session: decodeSevSession(send.sessionBytes),
      policy: 0x1,
    });
    expect(Buffer.from(keys.tek).equals(Buffer.from(send.keys.tek))).toBe(true);
    const page = Buffer.alloc(4096, 0x5c);
    const packet = sealSevPacket({
      context: SevPacketContext.TRANSPORT,
      keys: send.keys,
      iv: Buffer.alloc(16, 1),
      plaintext: page,
    });
    expect(openSevPacket({ context: SevPacketContext.TRANSPORT, keys, ...packet }).equals(page)).toBe(true);
  });

  it('SEND_START refuses an unverifiable target chain and a forbidding policy', () => {
    const base = { sourcePdhPrivateKey: source.keys.pdh, context: { target: target.chain } };
    expect(() => startSevSend({ ...base, policy: 0x1 })).toThrow(SevUntrustedRootError);
    expect(() => startSevSend({ ...base, policy: 0x8, chainOptions: roots })).toThrow(SevPolicyError);
    const swapped = { ...target.chain, pdh: source.chain.pdh };
    expect(() =>
      startSevSend({ ...base, policy: 0x1, chainOptions: roots, context: { target: swapped } }),
    ).toThrow(SevBadSignatureError);
  });
});
