import { describe, expect, it } from 'vitest';
import { realChain, syntheticChain } from './__fixtures__/chains.js';
import { readVector } from './__fixtures__/vectors.js';
import { decodeAmdCertificate, encodeAmdCertificate } from './amd-cert.js';
import { assertSevChain, SEV_CHAIN_LINKS, verifySevChain, type SevCertificateChain } from './chain.js';
import { SevCertOffset } from './constants.js';
import { SevBadSignatureError, SevUntrustedRootError, SevWrongGenerationError } from './errors.js';
import { identifySevGeneration, SEV_GENERATIONS } from './generation.js';
import { decodeSevCertificate, encodeSevCertificate, type SevCertificate } from './sev-cert.js';
import { verifyAmdCertificateSignature } from './signing.js';

const flipBit = (cert: SevCertificate, offset: number, bit = 0): SevCertificate => {
  const bytes = encodeSevCertificate(cert);
  bytes[offset] ^= 1 << bit;
  return decodeSevCertificate(bytes);
};
const failed = (chain: SevCertificateChain) =>
  verifySevChain(chain)
    .links.filter((l) => !l.ok)
    .map((l) => [l.link, l.ok ? '' : l.reason]);

describe('AMD roots', () => {
  it.each(SEV_GENERATIONS)(
    '%s: ARK self-signature and ASK←ARK verify; the ARK names its generation',
    (gen) => {
      const ark = decodeAmdCertificate(readVector(`sev/amd-ca/${gen}/ark.cert`));
      const ask = decodeAmdCertificate(readVector(`sev/amd-ca/${gen}/ask.cert`));
      expect(identifySevGeneration(ark)).toBe(gen);
      expect(() => verifyAmdCertificateSignature(ark, ark)).not.toThrow();
      expect(() => verifyAmdCertificateSignature(ask, ark)).not.toThrow();
    },
  );

  it('an ASK does not verify under another generation’s ARK', () => {
    const milanAsk = decodeAmdCertificate(readVector('sev/amd-ca/milan/ask.cert'));
    const genoaArk = decodeAmdCertificate(readVector('sev/amd-ca/genoa/ark.cert'));
    expect(() => verifyAmdCertificateSignature(milanAsk, genoaArk)).toThrow(SevBadSignatureError);
  });

  it('rejects an ASK presented as ARK and a forged ARK reusing AMD’s KEY_ID', () => {
    expect(() => identifySevGeneration(decodeAmdCertificate(readVector('sev/amd-ca/rome/ask.cert')))).toThrow(
      SevUntrustedRootError,
    );
    const ark = decodeAmdCertificate(readVector('sev/amd-ca/rome/ark.cert'));
    expect(() => identifySevGeneration({ ...ark, modulus: ark.modulus ^ 2n })).toThrow(SevUntrustedRootError);
  });
});

describe('verifySevChain on real chains', () => {
  it.each(['naples', 'rome'] as const)('%s: every link passes and the generation is identified', (gen) => {
    const verdict = verifySevChain(realChain(gen));
    expect(verdict.links.map((l) => l.link)).toEqual([...SEV_CHAIN_LINKS]);
    expect(verdict.ok).toBe(true);
    expect(verdict.failure).toBeUndefined();
    expect(verdict.generation).toBe(gen);
    expect(assertSevChain(realChain(gen))).toBe(gen);
  });

  it('Naples CEK under the Rome ASK/ARK fails with wrong-generation at cek-by-ask only', () => {
    const verdict = verifySevChain(realChain('naples', 'rome'));
    expect(verdict.ok).toBe(false);
    expect(verdict.generation).toBe('rome');
    expect(failed(realChain('naples', 'rome'))).toEqual([['cek-by-ask', 'wrong-generation']]);
    expect(verdict.failure?.error).toBeInstanceOf(SevWrongGenerationError);
  });

  it.each(['milan', 'genoa', 'turin'])('Rome CEK under the %s ASK fails with bad-signature', (amd) => {
    expect(failed(realChain('rome', amd))).toEqual([['cek-by-ask', 'bad-signature']]);
  });

  it('Rome CEK under the Naples ASK fails (RSA-SHA384 slot, 2048-bit ASK)', () => {
    expect(failed(realChain('rome', 'naples'))).toEqual([['cek-by-ask', 'wrong-generation']]);
  });

  it('an ASK from another generation under this ARK fails with wrong-generation', () => {
    const chain = realChain('rome');
    const milanAsk = decodeAmdCertificate(readVector('sev/amd-ca/milan/ask.cert'));
    expect(failed({ ...chain, ask: milanAsk })).toEqual([
      ['ask-by-ark', 'wrong-generation'],
      ['cek-by-ask', 'bad-signature'],
    ]);
  });

  it('expectedGeneration mismatch fails the ARK link', () => {
    const verdict = verifySevChain(realChain('rome'), { expectedGeneration: 'milan' });
    expect(verdict.failure).toMatchObject({ link: 'ark-self', reason: 'wrong-generation' });
  });

  it.each([
    ['pdh', SevCertOffset.PUB_KEY + 0x10, ['pdh-by-pek']],
    ['pek', SevCertOffset.PUB_KEY + 0x20, ['pek-by-oca', 'pek-by-cek', 'pdh-by-pek']],
    ['oca', SevCertOffset.API_MINOR, ['oca-self']],
    ['pek', SevCertOffset.SIG1 + 3, ['pek-by-oca']],
    ['pek', SevCertOffset.SIG2 + 0x50, ['pek-by-cek']],
    ['cek', SevCertOffset.SIG1 + 100, ['cek-by-ask']],
  ] as const)('a flipped bit in %s at offset %i fails exactly the links it covers', (role, offset, links) => {
    const chain = realChain('rome');
    const verdict = verifySevChain({ ...chain, [role]: flipBit(chain[role], offset, 1) });
    expect(verdict.links.filter((l) => !l.ok).map((l) => l.link)).toEqual(links);
    expect(verdict.failure?.reason).toBe('bad-signature');
  });

  it('a flipped bit in the ASK or ARK signature fails the AMD links', () => {
    const chain = realChain('naples');
    const askBytes = encodeAmdCertificate(chain.ask);
    askBytes[askBytes.length - 7] ^= 0x10;
    expect(failed({ ...chain, ask: decodeAmdCertificate(askBytes) })).toEqual([
      ['ask-by-ark', 'bad-signature'],
    ]);
    const arkBytes = encodeAmdCertificate(chain.ark);
    arkBytes[arkBytes.length - 1] ^= 0x01;
    expect(failed({ ...chain, ark: decodeAmdCertificate(arkBytes) })).toEqual([
      ['ark-self', 'bad-signature'],
    ]);
  });

  it('PEK with its two signature slots swapped still verifies (slots are matched by usage)', () => {
    const chain = realChain('naples');
    const pek = { ...chain.pek, signatures: [chain.pek.signatures[1], chain.pek.signatures[0]] as const };
    expect(verifySevChain({ ...chain, pek }).ok).toBe(true);
  });

  it('PEK whose signers are swapped (OCA-labelled slot holds the CEK signature) fails both PEK links', () => {
    const chain = realChain('rome');
    const [s1, s2] = chain.pek.signatures;
    const pek = {
      ...chain.pek,
      signatures: [
        { ...s1, value: s2.value },
        { ...s2, value: s1.value },
      ] as const,
    };
    expect(failed({ ...chain, pek })).toEqual([
      ['pek-by-oca', 'bad-signature'],
      ['pek-by-cek', 'bad-signature'],
    ]);
  });

  it('PEK and OCA given in each other’s place fail as invalid-certificate / missing-signature', () => {
    const chain = realChain('rome');
    const verdict = verifySevChain({ ...chain, pek: chain.oca, oca: chain.pek });
    expect(verdict.ok).toBe(false);
    expect(verdict.links.find((l) => l.link === 'oca-self')).toMatchObject({
      ok: false,
      reason: 'invalid-certificate',
    });
    expect(verdict.links.find((l) => l.link === 'pdh-by-pek')).toMatchObject({
      ok: false,
      reason: 'missing-signature',
    });
  });

  it('a PDH signed by a PEK of another machine fails', () => {
    const naples = realChain('naples');
    const rome = realChain('rome');
    expect(failed({ ...rome, pdh: naples.pdh })).toEqual([['pdh-by-pek', 'bad-signature']]);
  });

  it('assertSevChain throws the first failure’s typed error', () => {
    expect(() => assertSevChain(realChain('naples', 'rome'))).toThrow(SevWrongGenerationError);
  });
});

describe('verifySevChain on a synthetic chain (signing helpers)', () => {
  const { chain } = syntheticChain();

  it('fails untrusted-root without the extra root and passes with it', () => {
    expect(verifySevChain(chain).failure).toMatchObject({ link: 'ark-self', reason: 'untrusted-root' });
    const verdict = verifySevChain(chain, { extraRoots: [{ ark: chain.ark, generation: 'naples' }] });
    expect(verdict).toMatchObject({ ok: true, generation: 'naples' });
  });

  it('real AMD ARK with a synthetic ASK fails ask-by-ark', () => {
    const amdArk = decodeAmdCertificate(readVector('sev/amd-ca/naples/ark.cert'));
    const verdict = verifySevChain({ ...chain, ark: amdArk });
    expect(verdict.links.filter((l) => !l.ok).map((l) => l.link)).toEqual(['ask-by-ark']);
  });
});
