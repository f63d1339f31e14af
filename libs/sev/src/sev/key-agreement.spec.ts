import { describe, expect, it } from 'vitest';
import { syntheticChain } from './__fixtures__/chains.js';
import { readVector } from './__fixtures__/vectors.js';
import { SevAlgorithm, SevUsage } from './constants.js';
import { SevBadMacError, SevInvalidCertificateError, SevInvalidParamError } from './errors.js';
import {
  createGodhCertificate,
  createSevTransportSession,
  generateSevDhKeyPair,
  openSevTransportSession,
  sevEcdhSharedSecret,
} from './key-agreement.js';
import { decodeSevCertificate, encodeSevCertificate } from './sev-cert.js';
import { generateKeyPairSync } from 'node:crypto';

describe('GODH and ECDH with the platform PDH', () => {
  const { chain, keys } = syntheticChain();

  it('GODH certificate: PDH usage, ECDH-SHA256, P-384, unsigned, round-trips', () => {
    const godh = createGodhCertificate(generateSevDhKeyPair().publicKey);
    expect(godh).toMatchObject({
      usage: SevUsage.PDH,
      algorithm: SevAlgorithm.ECDH_SHA256,
      apiMajor: 0,
      apiMinor: 0,
    });
    expect(godh.signatures.every((s) => s.value.kind === 'none')).toBe(true);
    const bytes = encodeSevCertificate(godh);
    expect(decodeSevCertificate(bytes)).toEqual(godh);
    expect(() => createGodhCertificate(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey)).toThrow(
      SevInvalidParamError,
    );
  });

  it('both ends compute the same 48-byte Z', () => {
    const owner = generateSevDhKeyPair();
    const godh = createGodhCertificate(owner.publicKey);
    const ownerZ = sevEcdhSharedSecret(owner.privateKey, chain.pdh);
    const firmwareZ = sevEcdhSharedSecret(keys.pdh, godh);
    expect(ownerZ.length).toBe(48);
    expect(ownerZ.equals(firmwareZ)).toBe(true);
  });

  it('works against a real platform PDH (public side only)', () => {
    const pdh = decodeSevCertificate(readVector('sev/platform/rome/pdh.cert'));
    const { session } = createSevTransportSession({
      privateKey: generateSevDhKeyPair().privateKey,
      peer: pdh,
      policy: 1,
    });
    expect(session.wrapTk.length).toBe(32);
  });

  it('refuses a non-PDH peer (a PEK is ECDSA, not a DH key)', () => {
    expect(() => sevEcdhSharedSecret(generateSevDhKeyPair().privateKey, chain.pek)).toThrow(
      SevInvalidCertificateError,
    );
  });

  it('session created by the owner opens on the firmware side; another PDH cannot open it', () => {
    const owner = generateSevDhKeyPair();
    const godh = createGodhCertificate(owner.publicKey);
    const created = createSevTransportSession({ privateKey: owner.privateKey, peer: chain.pdh, policy: 0x5 });
    const opened = openSevTransportSession({
      privateKey: keys.pdh,
      peer: godh,
      session: created.session,
      policy: 0x5,
    });
    expect(Buffer.from(opened.tek).equals(Buffer.from(created.keys.tek))).toBe(true);
    expect(Buffer.from(opened.tik).equals(Buffer.from(created.keys.tik))).toBe(true);
    expect(() =>
      openSevTransportSession({
        privateKey: generateSevDhKeyPair().privateKey,
        peer: godh,
        session: created.session,
        policy: 0x5,
      }),
    ).toThrow(SevBadMacError);
  });
});
