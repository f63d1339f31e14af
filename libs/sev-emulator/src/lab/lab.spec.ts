import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeAmdCertificate,
  encodeAmdCertificate,
  readVekInfo,
  verifySevChain,
  verifySnpCertChain,
} from '@ccm/sev';
import { createTestBed, type TestBed } from '../__fixtures__/testbed.js';
import { isSevFirmwareError, SevStateStoreError } from '../errors.js';
import { SoftwareSecureProcessor } from '../processor.js';
import { LabAuthority } from './lab-authority.js';

describe('lab authority', () => {
  let bed: TestBed;
  beforeAll(async () => {
    bed = await createTestBed();
  });
  afterAll(() => bed.cleanup());

  it('default SEV chain verification rejects the lab root; passing it as an extra root accepts it', () => {
    const host = bed.host('sev-chain');
    const chain = host.certificateChain();
    const byDefault = verifySevChain(chain);
    expect(byDefault.ok).toBe(false);
    expect(byDefault.failure?.link).toBe('ark-self');
    expect(byDefault.failure?.reason).toBe('untrusted-root');
    const trusted = verifySevChain(chain, { extraRoots: bed.lab.trustAnchors().sevExtraRoots });
    expect(trusted.ok).toBe(true);
    expect(trusted.generation).toBe('milan');
  });

  it('default SNP chain verification rejects the lab ARK; trustedArks accepts it', () => {
    const chain = bed.host('snp-chain').snpCertChain();
    const byDefault = verifySnpCertChain(chain);
    expect(byDefault.ok).toBe(false);
    if (!byDefault.ok) expect(byDefault.reason).toBe('untrusted-root');
    const trusted = verifySnpCertChain(chain, { trustedArks: bed.lab.trustAnchors().snpTrustedArks });
    expect(trusted.ok).toBe(true);
    if (trusted.ok) {
      expect(trusted.generation).toBe('milan');
      expect(trusted.vekKind).toBe('VCEK');
      expect(trusted.vek.productName).toBe('Milan-B0');
    }
  });

  it('never uses AMD keys: the ARK names the lab, not an AMD product key id', () => {
    expect(bed.lab.arkX509.subject).toContain('CN=ARK-Milan');
    expect(bed.lab.arkX509.subject).toContain('not AMD');
    expect(bed.lab.askX509.ca).toBe(true);
    expect(bed.lab.ark.certifyingId).toEqual(bed.lab.ark.keyId);
    expect(bed.lab.ask.certifyingId).toEqual(bed.lab.ark.keyId);
  });

  it('reopens from its directory with the same roots', () => {
    const again = LabAuthority.open(join(bed.root, 'lab'));
    expect(encodeAmdCertificate(again.ark)).toEqual(encodeAmdCertificate(bed.lab.ark));
    expect(again.arkX509.raw).toEqual(bed.lab.arkX509.raw);
    expect([...again.trustAnchors().snpTrustedArks]).toEqual([...bed.lab.trustAnchors().snpTrustedArks]);
  });

  it('refuses a lab whose ASK was replaced by a certificate the ARK did not sign', async () => {
    const other = await LabAuthority.create(bed.dir('other-lab'), { rsaBits: 2048 });
    const copy = bed.dir('other-lab');
    writeFileSync(join(copy, 'ask.cert'), encodeAmdCertificate(bed.lab.ask));
    expect(() => LabAuthority.open(copy)).toThrow(SevStateStoreError);
    expect(decodeAmdCertificate(encodeAmdCertificate(other.ask)).usage).toBe(0x13);
  });

  it('refuses to create over an existing lab', async () => {
    await expect(LabAuthority.create(join(bed.root, 'lab'))).rejects.toSatisfy((e) =>
      isSevFirmwareError(e, 'HWERROR_PLATFORM'),
    );
  });

  it('a 4096-bit Genoa lab (the default size) endorses chains that verify with SHA-384 PSS', async () => {
    const lab = await LabAuthority.create(bed.dir('genoa-lab'), { generation: 'genoa' });
    expect(lab.ark.modulusBits).toBe(4096);
    const host = SoftwareSecureProcessor.create(bed.dir('genoa-host'), { lab });
    const chain = host.certificateChain();
    expect(chain.cek.signatures[0].algorithm).toBe(0x0101);
    expect(verifySevChain(chain, { extraRoots: lab.trustAnchors().sevExtraRoots }).generation).toBe('genoa');
    const snp = verifySnpCertChain(host.snpCertChain(), { trustedArks: lab.trustAnchors().snpTrustedArks });
    expect(snp.ok && snp.generation).toBe('genoa');
  });

  it('opens a lab and a platform written in AMD’s spelling of the product line (`Milan`, as before)', async () => {
    const labDir = bed.dir('old-spelling-lab');
    await LabAuthority.create(labDir, { generation: 'milan', rsaBits: 2048 });
    const host = SoftwareSecureProcessor.create(bed.dir('old-spelling-host'), {
      lab: LabAuthority.open(labDir),
    });
    const respell = (file: string) => {
      const o = JSON.parse(readFileSync(file, 'utf8')) as { generation: string };
      expect(o.generation).toBe('milan');
      writeFileSync(file, JSON.stringify({ ...o, generation: 'Milan' }));
    };
    respell(join(labDir, 'lab.json'));
    respell(join(host.stateDir, 'platform.json'));
    const lab = LabAuthority.open(labDir);
    expect(lab.trustAnchors().sevExtraRoots[0].generation).toBe('milan');
    const reopened = SoftwareSecureProcessor.open(host.stateDir);
    expect(reopened.config.generation).toBe('milan');
    const snp = verifySnpCertChain(reopened.snpCertChain(), {
      trustedArks: lab.trustAnchors().snpTrustedArks,
    });
    expect(snp.ok && snp.generation).toBe('milan');
  });

  it('endorses a cloud provider’s VLEK: ARK → ASVK → VLEK verifies under the lab’s roots only', async () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    const tcb = { layout: 'milan-genoa', bootLoader: 4, tee: 0, snp: 23, microcode: 213 } as const;
    const { asvk, vlek } = await bed.lab.issueVlek({ publicKey, tcb, cspId: 'CN=cloud.example' });
    expect(asvk.subject).toContain('CN=SEV-VLEK-Milan');
    const info = readVekInfo(vlek);
    expect(info).toMatchObject({
      kind: 'VLEK',
      generation: 'milan',
      cspId: 'CN=cloud.example',
      hwId: undefined,
    });
    expect(info.tcb).toMatchObject({ bootLoader: 4, snp: 23, microcode: 213 });
    const chain = { ark: bed.lab.arkX509, ask: asvk, vek: vlek };
    expect(verifySnpCertChain(chain).ok).toBe(false);
    const v = verifySnpCertChain(chain, { trustedArks: bed.lab.trustAnchors().snpTrustedArks });
    expect(v.ok && [v.generation, v.vekKind]).toEqual(['milan', 'VLEK']);
    // The VLEK under the lab's ASK (the VCEK signer) does not verify.
    const wrong = verifySnpCertChain(
      { ...chain, ask: bed.lab.askX509 },
      { trustedArks: bed.lab.trustAnchors().snpTrustedArks },
    );
    expect(wrong.ok).toBe(false);
  });
});
