import { createHash, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  flipBit,
  hex,
  SNP_REPORT_VECTORS,
  VECTOR_TIME,
  vectorBytes,
  vectorText,
} from './__fixtures__/vectors.js';
import { AMD_SNP_CA_SHA256 } from './amd-roots.js';
import { assertSnpCertChain, type SnpCertChain, type SnpChainOptions, verifySnpCertChain } from './chain.js';
import { assembleSnpCertChain } from './chain-input.js';
import { SnpChainError } from './errors.js';
import type { SnpGeneration } from './generation.js';
import { parsePemBundle } from './x509.js';

const at: SnpChainOptions = { now: VECTOR_TIME };
const ca = (g: string, file: string) => vectorText(`snp/amd-ca/${g}/${file}`);
const der = (c: X509Certificate) => new Uint8Array(c.raw);
const sha256 = (c: X509Certificate) => createHash('sha256').update(c.raw).digest('hex');

const turinVcek = vectorBytes('snp/certs/virtee-turin-vcek/vcek_turin.der');
const milanVcek = vectorBytes('snp/reports/virtee-milan-vcek/vcek_milan.der');
const vlek = vectorBytes('snp/reports/trustee-milan-vlek/vlek.der');
const milanChain = (): SnpCertChain => ({
  ark: ca('milan', 'ark.pem'),
  ask: ca('milan', 'ask.pem'),
  vek: milanVcek,
});

function failure(chain: SnpCertChain, options: SnpChainOptions = at) {
  const v = verifySnpCertChain(chain, options);
  if (v.ok) throw new Error('chain unexpectedly verified');
  return { link: v.link, reason: v.reason, generation: v.generation };
}

describe('AMD CA certificates', () => {
  it.each(['milan', 'genoa', 'turin'] as const)(
    '%s ARK/ASK/ASVK bundles match the pinned fingerprints',
    (g) => {
      const dir = g.toLowerCase();
      const pins = AMD_SNP_CA_SHA256[g];
      const [ask, ark, asvk] = parsePemBundle(ca(dir, 'ask_ark_asvk.pem'));
      expect([sha256(ask), sha256(ark), sha256(asvk)]).toEqual([pins.ask, pins.ark, pins.asvk]);
      expect(sha256(new X509Certificate(ca(dir, 'ark.pem')))).toBe(pins.ark);
      expect(sha256(new X509Certificate(ca(dir, 'ask.pem')))).toBe(pins.ask);
      expect(parsePemBundle(ca(dir, 'asvk_ark_kds_vlek_chain.pem')).map(sha256)).toEqual([
        pins.asvk,
        pins.ark,
      ]);
    },
  );
});

describe('verifySnpCertChain on real chains', () => {
  it.each(SNP_REPORT_VECTORS)('$name: $kind ← ASK/ASVK ← Milan ARK', (v) => {
    const verdict = assertSnpCertChain(assembleSnpCertChain(vectorBytes(v.vek), vectorText(v.cas)), at);
    expect([verdict.generation, verdict.vekKind, verdict.vek.kind]).toEqual(['milan', v.kind, v.kind]);
  });

  it('Turin VCEK ← Turin ASK ← Turin ARK, with its fmcSPL and 8-byte hwID', () => {
    const verdict = assertSnpCertChain(
      assembleSnpCertChain(turinVcek, vectorText('snp/certs/virtee-turin-vcek/cert_chain_turin.pem')),
      at,
    );
    expect(verdict.generation).toBe('turin');
    expect(verdict.vek).toMatchObject({ productName: 'Turin', structVersion: 1, cspId: undefined });
    expect(verdict.vek.tcb).toEqual({ layout: 'turin', fmc: 0, bootLoader: 0, tee: 0, snp: 0, microcode: 9 });
    expect(hex(verdict.vek.hwId!)).toBe('1e550a8ee5cf9f4d');
  });

  it('accepts the VLEK whose certificate expired 2025-12-10 only when told to ignore validity', () => {
    const chain = assembleSnpCertChain(vlek, ca('milan', 'asvk_ark_kds_vlek_chain.pem'));
    expect(failure(chain, { now: new Date('2026-01-01T00:00:00Z') })).toEqual({
      link: 'vek',
      reason: 'expired',
      generation: 'milan',
    });
    expect(
      verifySnpCertChain(chain, { now: new Date('2026-01-01T00:00:00Z'), ignoreValidity: true }).ok,
    ).toBe(true);
    expect(failure(chain, { now: new Date('2019-01-01T00:00:00Z') })).toMatchObject({
      link: 'ark',
      reason: 'not-yet-valid',
    });
  });
});

describe('verifySnpCertChain rejects', () => {
  it.each([
    ['genoa', 'milan', milanVcek],
    ['milan', 'turin', turinVcek],
    ['genoa', 'turin', turinVcek],
  ] as const)('a signer from another line: %s ARK+ASK with a %s VCEK', (line, _vekLine, vek) => {
    const dir = line.toLowerCase();
    expect(failure({ ark: ca(dir, 'ark.pem'), ask: ca(dir, 'ask.pem'), vek })).toEqual({
      link: 'vek',
      reason: 'wrong-generation',
      generation: line,
    });
  });

  it('a Genoa ASK under the Milan ARK', () => {
    expect(failure({ ...milanChain(), ask: ca('genoa', 'ask.pem') })).toMatchObject({
      link: 'ask',
      reason: 'wrong-generation',
    });
  });

  it('a VLEK presented with the ASK instead of the ASVK', () => {
    expect(failure({ ...milanChain(), vek: vlek })).toMatchObject({ link: 'vek', reason: 'issuer-mismatch' });
  });

  it('a VCEK with one bit flipped in its hwID extension', () => {
    const hwIdByte = Buffer.from(milanVcek).indexOf(Buffer.from('d49554ec717f4e5b', 'hex'));
    expect(hwIdByte).toBeGreaterThan(0);
    expect(failure({ ...milanChain(), vek: flipBit(milanVcek, hwIdByte + 10) })).toMatchObject({
      link: 'vek',
      reason: 'bad-signature',
    });
  });

  it('an ASK with one bit flipped in its signature', () => {
    const ask = der(new X509Certificate(ca('milan', 'ask.pem')));
    expect(failure({ ...milanChain(), ask: flipBit(ask, ask.length - 1) })).toMatchObject({
      link: 'ask',
      reason: 'bad-signature',
    });
  });

  it('an ARK with one bit flipped: unpinned, and a bad self-signature even if pinned', () => {
    const original = der(new X509Certificate(ca('milan', 'ark.pem')));
    const ark = flipBit(original, original.length - 10);
    expect(failure({ ...milanChain(), ark })).toMatchObject({ link: 'ark', reason: 'untrusted-root' });
    const pinned = new Map<string, SnpGeneration>([
      [createHash('sha256').update(ark).digest('hex'), 'milan'],
    ]);
    expect(failure({ ...milanChain(), ark }, { ...at, trustedArks: pinned })).toMatchObject({
      link: 'ark',
      reason: 'bad-signature',
    });
  });

  it('a chain whose ARK is not the expected line, or not a root at all', () => {
    expect(failure(milanChain(), { ...at, expectedGeneration: 'genoa' })).toMatchObject({
      link: 'ark',
      reason: 'wrong-generation',
    });
    expect(failure({ ...milanChain(), ark: ca('milan', 'ask.pem') })).toMatchObject({
      link: 'ark',
      reason: 'untrusted-root',
    });
    expect(failure(milanChain(), { ...at, trustedArks: new Map() })).toMatchObject({
      link: 'ark',
      reason: 'untrusted-root',
    });
  });

  it('unreadable certificates, naming the link', () => {
    expect(failure({ ...milanChain(), vek: milanVcek.subarray(0, 100) })).toMatchObject({
      link: 'vek',
      reason: 'malformed',
    });
    expect(failure({ ...milanChain(), ask: 'not a certificate' })).toMatchObject({
      link: 'ask',
      reason: 'malformed',
    });
  });

  it('through assertSnpCertChain as a typed SnpChainError', () => {
    expect(() => assertSnpCertChain({ ...milanChain(), vek: vlek }, at)).toThrow(SnpChainError);
  });
});
