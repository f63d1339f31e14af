import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSevCertificate,
  decodeSevCertificate,
  encodeSevCertificate,
  SevAlgorithm,
  SevPolicyBit,
  sevPublicKeyFromKeyObject,
  SevUsage,
  signSevCertificate,
  verifySevChain,
} from '@ccm/sev';
import { failure, runningGuest, targetOf } from '../__fixtures__/guests.js';
import { createTestBed, type TestBed } from '../__fixtures__/testbed.js';
import { SoftwareSecureProcessor } from '../processor.js';

/** An owner's certificate authority as sevtool makes one: a self-signed P-384 OCA certificate. */
function externalOca(): { key: KeyObject; cert: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const unsigned = createSevCertificate({
    usage: SevUsage.OCA,
    algorithm: SevAlgorithm.ECDSA_SHA256,
    publicKey: sevPublicKeyFromKeyObject(publicKey),
  });
  const cert = signSevCertificate(unsigned, 0, {
    usage: SevUsage.OCA,
    algorithm: SevAlgorithm.ECDSA_SHA256,
    privateKey,
  });
  return { key: privateKey, cert: encodeSevCertificate(cert) };
}

/** The owner's side of PEK_CSR → PEK_CERT_IMPORT: sign the CSR with the OCA (slot 1). */
function signCsr(csr: Uint8Array, ocaKey: KeyObject): Buffer {
  const pek = signSevCertificate(decodeSevCertificate(csr), 0, {
    usage: SevUsage.OCA,
    algorithm: SevAlgorithm.ECDSA_SHA256,
    privateKey: ocaKey,
  });
  return encodeSevCertificate(pek);
}

describe('ownership by an external OCA (PEK_CSR, PEK_CERT_IMPORT)', () => {
  let bed: TestBed;
  beforeAll(async () => {
    bed = await createTestBed();
  });
  afterAll(() => bed.cleanup());
  const trust = () => ({ extraRoots: bed.lab.trustAnchors().sevExtraRoots });

  it('takes ownership; the chain then verifies with the new OCA, also after a restart', () => {
    const sp = bed.host('owned');
    const oca = externalOca();
    const csr = sp.pekCsr();
    const request = decodeSevCertificate(csr);
    expect(request.signatures.map((s) => s.usage)).toEqual([SevUsage.INVALID, SevUsage.INVALID]);
    sp.pekCertImport(signCsr(csr, oca.key), oca.cert);
    expect(sp.platformStatus()).toMatchObject({ owner: 'external' });
    expect(sp.platformStatus().bytes[3]).toBe(1);
    const chain = sp.certificateChain();
    expect(encodeSevCertificate(chain.oca)).toEqual(oca.cert);
    expect(chain.pek.signatures.map((s) => s.usage)).toEqual([SevUsage.OCA, SevUsage.CEK]);
    expect(verifySevChain(chain, trust()).ok).toBe(true);
    const reopened = SoftwareSecureProcessor.open(sp.stateDir);
    expect(reopened.platformStatus().owner).toBe('external');
    expect(verifySevChain(reopened.certificateChain(), trust()).ok).toBe(true);
    expect(failure(() => sp.pekCertImport(signCsr(csr, oca.key), oca.cert)).code).toBe('ALREADY_OWNED');
    sp.pekGen();
    expect(sp.platformStatus().owner).toBe('self');
    expect(encodeSevCertificate(sp.certificateChain().oca)).not.toEqual(oca.cert);
  });

  it('refuses a foreign PEK, a PEK the OCA did not sign, and an OCA that is not self-signed', () => {
    const sp = bed.host('refuse');
    const other = bed.host('other');
    const oca = externalOca();
    const stranger = externalOca();
    expect(failure(() => sp.pekCertImport(signCsr(other.pekCsr(), oca.key), oca.cert)).code).toBe(
      'INVALID_CERTIFICATE',
    );
    expect(failure(() => sp.pekCertImport(signCsr(sp.pekCsr(), stranger.key), oca.cert)).code).toBe(
      'BAD_SIGNATURE',
    );
    const forged = signSevCertificate(decodeSevCertificate(oca.cert), 0, {
      usage: SevUsage.OCA,
      algorithm: SevAlgorithm.ECDSA_SHA256,
      privateKey: stranger.key,
    });
    expect(
      failure(() => sp.pekCertImport(signCsr(sp.pekCsr(), oca.key), encodeSevCertificate(forged))).code,
    ).toBe('BAD_SIGNATURE');
    expect(failure(() => sp.pekCertImport(sp.pekCsr(), oca.cert)).code).toBe('BAD_SIGNATURE');
    expect(failure(() => sp.pekCertImport(Buffer.alloc(10), oca.cert)).code).toBe('INVALID_LENGTH');
    expect(failure(() => sp.pekCertImport(oca.cert, oca.cert)).code).toBe('INVALID_CERTIFICATE');
    expect(sp.platformStatus().owner).toBe('self');
  });

  it('DOMAIN: a guest may move between platforms of the same owner, not to another owner', () => {
    const oca = externalOca();
    const [a, b, c] = ['dom-a', 'dom-b', 'dom-c'].map((n) => bed.host(n));
    for (const sp of [a, b]) sp.pekCertImport(signCsr(sp.pekCsr(), oca.key), oca.cert);
    const guest = runningGuest(a, { policy: SevPolicyBit.DOMAIN });
    expect(failure(() => a.sendStart(guest, targetOf(c)))).toMatchObject({
      code: 'POLICY_FAILURE',
      reason: 'domain',
    });
    const { session, policy } = a.sendStart(guest, targetOf(b));
    const incoming = b.receiveStart({
      policy,
      sourcePdh: a.pdhCertExport().pdh,
      session,
      memoryBytes: guest.host.size,
    });
    expect(incoming.state).toBe('RUPDATE');
  });
});
