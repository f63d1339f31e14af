import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAttestationReport, SNP_REPORT_SIZE, SnpLaunchDigest, verifySnpEvidence } from '@ccm/sev';
import { failure, targetOf } from '../__fixtures__/guests.js';
import { testImage } from '../__fixtures__/bytes.js';
import { createTestBed, type TestBed } from '../__fixtures__/testbed.js';
import { vector } from '../__fixtures__/vectors.js';
import type { SevGuest } from '../guest/sev-guest.js';
import { LabAuthority } from '../lab/lab-authority.js';
import { SoftwareSecureProcessor } from '../processor.js';

const POLICY = 0x30000n; // SMT allowed, reserved bit 17
const FOUR_GIB = 0x1_0000_0000;
const OVMF = (): Buffer => vector('sev/kat/virtee-ovmf/ovmf_AmdSev_suffix.bin');

function snpHost(bed: TestBed, name: string, lab?: LabAuthority): SoftwareSecureProcessor {
  const sp = lab ? SoftwareSecureProcessor.create(bed.dir(name), { lab }) : bed.host(name, { init: false });
  sp.snpInit();
  sp.init();
  return sp;
}

/** An SNP launch as QEMU does it: OVMF pages, metadata pages, a VMSA; returns the expected digest. */
function launchSnp(sp: SoftwareSecureProcessor, policy = POLICY): { guest: SevGuest; expected: Uint8Array } {
  const guest = sp.snpLaunchStart({ policy, memoryBytes: FOUR_GIB });
  sp.activate(guest);
  const ovmf = OVMF();
  const base = FOUR_GIB - ovmf.length;
  guest.host.write(base, ovmf);
  sp.snpLaunchUpdate(guest, base, ovmf.length, 'NORMAL');
  sp.snpLaunchUpdate(guest, 0x800000, 0x2000, 'ZERO');
  sp.snpLaunchUpdate(guest, 0x80a000, 0x1000, 'SECRETS');
  guest.host.write(0x80b000, testImage(4096, 2));
  sp.snpLaunchUpdate(guest, 0x80b000, 0x1000, 'CPUID');
  const vmsa = testImage(4096, 3);
  sp.snpLaunchUpdateVmsa(guest, vmsa);
  const expected = new SnpLaunchDigest()
    .updateNormal(BigInt(base), ovmf)
    .updateUnmeasured('ZERO', 0x800000n, 2)
    .updateUnmeasured('SECRETS', 0x80a000n)
    .updateUnmeasured('CPUID', 0x80b000n)
    .updateVmsa(vmsa)
    .digest();
  return { guest, expected };
}

describe('SEV-SNP: launch digest and VCEK-signed attestation reports', () => {
  let bed: TestBed;
  let sp: SoftwareSecureProcessor;
  beforeAll(async () => {
    bed = await createTestBed();
    sp = snpHost(bed, 'snp');
  });
  afterAll(() => bed.cleanup());

  it('a report with the guest’s REPORT_DATA verifies with verifySnpEvidence only when the lab ARK is trusted', () => {
    const { guest, expected } = launchSnp(sp);
    const hostData = randomBytes(32);
    sp.snpLaunchFinish(guest, { hostData });
    const nonce = randomBytes(64);
    const report = guest.inGuest().attestationReport(nonce);
    expect(report).toHaveLength(SNP_REPORT_SIZE);
    const options = {
      expectedReportData: nonce,
      expectedMeasurement: expected,
      expectedHostData: hostData,
      expectedVmpl: 0,
    };
    const trusted = verifySnpEvidence(report, sp.snpCertChain(), {
      ...options,
      trustedArks: bed.lab.trustAnchors().snpTrustedArks,
    });
    expect(trusted.errors).toEqual([]);
    expect(trusted.ok).toBe(true);
    expect(trusted.checks.measurement.status).toBe('passed');
    const byDefault = verifySnpEvidence(report, sp.snpCertChain(), options);
    expect(byDefault.ok).toBe(false);
    expect(byDefault.checks.chain).toMatchObject({ status: 'failed', error: { reason: 'untrusted-root' } });
    const parsed = parseAttestationReport(report);
    expect(Buffer.from(parsed.chipId)).toEqual(sp.getId());
    expect(parsed.reportedTcb).toEqual(sp.config.tcb);
    expect(parsed.version).toBe(3);
  });

  it('MEASUREMENT of an OVMF-only launch equals the virtee known answer', () => {
    const guest = sp.snpLaunchStart({ policy: POLICY, memoryBytes: FOUR_GIB });
    sp.activate(guest);
    const ovmf = OVMF();
    guest.host.write(FOUR_GIB - ovmf.length, ovmf);
    sp.snpLaunchUpdate(guest, FOUR_GIB - ovmf.length, ovmf.length, 'NORMAL');
    sp.snpLaunchFinish(guest);
    const report = parseAttestationReport(guest.inGuest().attestationReport(Buffer.from('kat')));
    expect(Buffer.from(report.measurement).toString('hex')).toBe(
      '086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74',
    );
    expect(Buffer.from(report.reportData.subarray(0, 3)).toString()).toBe('kat');
  });

  it('a Turin platform: 8-byte hwID, FMC SPL, and the evidence still binds', async () => {
    const turinLab = await LabAuthority.create(bed.dir('turin-lab'), { generation: 'turin', rsaBits: 2048 });
    const turin = snpHost(bed, 'turin', turinLab);
    const { guest, expected } = launchSnp(turin);
    turin.snpLaunchFinish(guest);
    const nonce = randomBytes(32);
    const verdict = verifySnpEvidence(
      guest.inGuest().attestationReport(nonce, { vmpl: 1 }),
      turin.snpCertChain(),
      {
        trustedArks: turinLab.trustAnchors().snpTrustedArks,
        expectedReportData: nonce,
        expectedMeasurement: expected,
        expectedVmpl: 1,
      },
    );
    expect(verdict.errors).toEqual([]);
    expect(verdict.generation).toBe('turin');
    expect(verdict.vek?.hwId).toHaveLength(8);
  });

  it('reports after a restart are signed by the same VCEK', () => {
    const reopened = SoftwareSecureProcessor.open(sp.stateDir);
    reopened.snpInit();
    reopened.init();
    const { guest, expected } = launchSnp(reopened);
    reopened.snpLaunchFinish(guest);
    const verdict = verifySnpEvidence(guest.inGuest().attestationReport(Buffer.alloc(0)), sp.snpCertChain(), {
      trustedArks: bed.lab.trustAnchors().snpTrustedArks,
      expectedMeasurement: expected,
    });
    expect(verdict.ok).toBe(true);
  });

  it('enforces SNP state, policy and request checks', () => {
    const plain = bed.host('plain');
    expect(failure(() => plain.snpLaunchStart({ policy: POLICY, memoryBytes: 1 << 20 })).code).toBe(
      'INVALID_PLATFORM_STATE',
    );
    expect(failure(() => sp.snpLaunchStart({ policy: 0x10000n, memoryBytes: 1 << 20 })).code).toBe(
      'INVALID_PARAM',
    );
    expect(failure(() => sp.snpLaunchStart({ policy: POLICY | (2n << 8n), memoryBytes: 1 << 20 })).code).toBe(
      'POLICY_FAILURE',
    );
    const guest = sp.snpLaunchStart({ policy: POLICY, memoryBytes: 1 << 20 });
    expect(failure(() => sp.snpLaunchUpdate(guest, 0, 4096, 'NORMAL')).code).toBe('INACTIVE');
    sp.activate(guest);
    expect(failure(() => sp.snpLaunchUpdate(guest, 16, 4096, 'NORMAL')).code).toBe('INVALID_ADDRESS');
    expect(failure(() => sp.snpLaunchUpdate(guest, 0, 100, 'NORMAL')).code).toBe('INVALID_LENGTH');
    expect(failure(() => sp.snpLaunchUpdate(guest, 0, 8192, 'SECRETS')).code).toBe('INVALID_LENGTH');
    expect(failure(() => sp.launchMeasure(guest)).code).toBe('INVALID_GUEST');
    expect(failure(() => guest.inGuest().attestationReport(Buffer.alloc(1)))).toMatchObject({
      code: 'INVALID_GUEST_STATE',
    });
    expect(failure(() => sp.dbgDecrypt(guest, 0, 16)).code).toBe('POLICY_FAILURE');
    sp.snpLaunchFinish(guest);
    expect(failure(() => sp.snpLaunchFinish(guest)).code).toBe('INVALID_GUEST_STATE');
    expect(failure(() => guest.inGuest().attestationReport(Buffer.alloc(65))).code).toBe('INVALID_PARAM');
    expect(failure(() => guest.inGuest().attestationReport(Buffer.alloc(1), { vmpl: 4 })).code).toBe(
      'INVALID_PARAM',
    );
    expect(failure(() => guest.inGuest().snpGuestRequest(Buffer.alloc(95))).code).toBe('INVALID_LENGTH');
    expect(failure(() => sp.sendStart(guest, targetOf(plain))).code).toBe('UNSUPPORTED');
    const debuggable = sp.snpLaunchStart({ policy: 0xb0000n, memoryBytes: 1 << 20 });
    sp.activate(debuggable);
    sp.dbgEncrypt(debuggable, 0, Buffer.from('0123456789abcdef'));
    expect(sp.dbgDecrypt(debuggable, 0, 16).toString()).toBe('0123456789abcdef');
  });
});
