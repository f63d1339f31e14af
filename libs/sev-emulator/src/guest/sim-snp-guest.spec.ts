import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { verifySnpEvidence } from '@ccm/sev';
import { LabAuthority } from '../lab/lab-authority.js';
import { SoftwareSecureProcessor } from '../processor.js';
import { launchSimSnpGuest, simSnpMeasurement } from './sim-snp-guest.js';

describe('simulated SNP guest', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ccm-sim-snp-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reports the measurement its image label predicts, signed by the platform VCEK', async () => {
    const lab = await LabAuthority.create(join(dir, 'lab'), { rsaBits: 2048 });
    const sp = SoftwareSecureProcessor.create(join(dir, 'sp'), { lab });
    sp.snpInit();
    sp.init();
    const guest = launchSimSnpGuest(sp, { image: 'web' });
    const report = guest.inGuest().attestationReport(Buffer.alloc(64, 7));
    const v = verifySnpEvidence(report, sp.snpCertChain(), {
      trustedArks: sp.trustAnchors().snpTrustedArks,
      expectedMeasurement: simSnpMeasurement('web'),
      expectedReportData: Buffer.alloc(64, 7),
    });
    expect(v.errors).toEqual([]);
    expect(v.ok).toBe(true);
    expect(simSnpMeasurement('other').equals(simSnpMeasurement('web'))).toBe(false);
  });
});
