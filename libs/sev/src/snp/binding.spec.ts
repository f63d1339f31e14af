import { describe, expect, it } from 'vitest';
import { flipBit, hex, SNP_REPORT_VECTORS, vectorBytes, vectorText } from './__fixtures__/vectors.js';
import { assertVekBinding, vekBindingErrors } from './binding.js';
import {
  SnpCertificateError,
  SnpChipIdMismatchError,
  SnpGenerationMismatchError,
  SnpSigningKeyMismatchError,
  SnpTcbMismatchError,
} from './errors.js';
import { parseAttestationReport } from './report-decode.js';
import { SNP_REPORT_FIELDS } from './report-layout.js';
import { readVekInfo } from './vek.js';

const [virtee, gosevguest, trustee] = SNP_REPORT_VECTORS;
const report = (path: string) => parseAttestationReport(vectorBytes(path));
const vek = (path: string) => readVekInfo(vectorBytes(path));

describe('VCEK/VLEK extensions against real reports', () => {
  it.each(SNP_REPORT_VECTORS)('$name: SPLs == REPORTED_TCB, hwID == CHIP_ID, kind == KEY_INFO', (v) => {
    const r = report(v.report);
    const info = vek(v.vek);
    expect(info.tcb).toEqual(r.reportedTcb);
    expect(info.kind).toBe(r.keyInfo.signingKey);
    expect(info.generation).toBe('milan');
    if (v.kind === 'VCEK') expect(hex(info.hwId!)).toBe(hex(r.chipId));
    expect(vekBindingErrors(r, info)).toEqual([]);
    expect(() => assertVekBinding(r, info)).not.toThrow();
  });

  it('reads the VLEK: productName Milan, cspID, ucodeSPL 0xD9 from 02 02 00 d9, no hwID', () => {
    expect(vek(trustee.vek)).toMatchObject({
      kind: 'VLEK',
      productName: 'Milan',
      cspId: 'CN=cc-us-east-2.amazonaws.com',
      hwId: undefined,
      tcb: { layout: 'milan-genoa', bootLoader: 4, tee: 0, snp: 24, microcode: 0xd9 },
    });
  });

  it('reads the VCEKs: productName Milan-B0 and their SPLs', () => {
    expect(vek(virtee.vek)).toMatchObject({
      productName: 'Milan-B0',
      structVersion: 0,
      tcb: { bootLoader: 3, snp: 8, microcode: 0x73 },
    });
    expect(vek(gosevguest.vek).tcb).toEqual({
      layout: 'milan-genoa',
      bootLoader: 2,
      tee: 0,
      snp: 5,
      microcode: 0x44,
    });
  });

  it('refuses certificates that are not a VCEK or VLEK', () => {
    expect(() => readVekInfo(vectorText('snp/amd-ca/milan/ask.pem'))).toThrow(SnpCertificateError);
  });
});

describe('binding failures', () => {
  it('a report whose REPORTED_TCB disagrees with its VCEK', () => {
    const bytes = vectorBytes(virtee.report);
    bytes[SNP_REPORT_FIELDS.REPORTED_TCB[0] + 6] = 9; // SNP SPL 8 -> 9
    const errors = vekBindingErrors(parseAttestationReport(bytes), vek(virtee.vek));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(SnpTcbMismatchError);
    expect((errors[0] as SnpTcbMismatchError).differences).toEqual([
      { field: 'snp', expected: 8, actual: 9 },
    ]);
  });

  it('a report from another chip', () => {
    const r = report(virtee.report);
    const flipped = parseAttestationReport(
      flipBit(vectorBytes(virtee.report), SNP_REPORT_FIELDS.CHIP_ID[0] + 63),
    );
    expect(() => assertVekBinding(flipped, vek(virtee.vek))).toThrow(SnpChipIdMismatchError);
    const errors = vekBindingErrors(r, vek(gosevguest.vek));
    expect(errors.map((e) => e.constructor)).toEqual([SnpTcbMismatchError, SnpChipIdMismatchError]);
  });

  it('a VLEK-signed report checked against a VCEK, and the reverse', () => {
    expect(vekBindingErrors(report(trustee.report), vek(virtee.vek))[0]).toBeInstanceOf(
      SnpSigningKeyMismatchError,
    );
    expect(vekBindingErrors(report(virtee.report), vek(trustee.vek))[0]).toBeInstanceOf(
      SnpSigningKeyMismatchError,
    );
  });

  it('a Milan report against a Turin VCEK', () => {
    const turin = readVekInfo(vectorBytes('snp/certs/virtee-turin-vcek/vcek_turin.der'));
    expect(
      vekBindingErrors(report(trustee.report), turin).some((e) => e instanceof SnpGenerationMismatchError),
    ).toBe(true);
    expect(
      vekBindingErrors(report(virtee.report), turin).some((e) => e instanceof SnpGenerationMismatchError),
    ).toBe(true);
  });

  it('a Turin report checks fmcSPL and the 8-byte hwID', () => {
    // A v3 report reshaped as a Turin one for the real Turin VCEK (fmc 0, bl 0, tee 0, snp 0, ucode 9).
    const turinVcek = readVekInfo(vectorBytes('snp/certs/virtee-turin-vcek/vcek_turin.der'));
    const bytes = vectorBytes(trustee.report);
    bytes.set([0x1a, 0x02, 0x00], SNP_REPORT_FIELDS.CPUID_FAM_ID[0]);
    for (const name of ['CURRENT_TCB', 'REPORTED_TCB', 'COMMITTED_TCB', 'LAUNCH_TCB'] as const) {
      bytes.set([0, 0, 0, 0, 0, 0, 0, 9], SNP_REPORT_FIELDS[name][0]);
    }
    bytes.set(Buffer.from('1e550a8ee5cf9f4d', 'hex'), SNP_REPORT_FIELDS.CHIP_ID[0]);
    bytes[SNP_REPORT_FIELDS.KEY_INFO[0]] = 0; // signed by a VCEK
    const turinReport = parseAttestationReport(bytes);
    expect(turinReport.generation).toBe('turin');
    expect(vekBindingErrors(turinReport, turinVcek)).toEqual([]);

    bytes[SNP_REPORT_FIELDS.REPORTED_TCB[0]] = 1; // fmc 0 -> 1
    bytes[SNP_REPORT_FIELDS.CHIP_ID[0] + 8] = 1; // a ninth chip-id byte
    const errors = vekBindingErrors(parseAttestationReport(bytes), turinVcek);
    expect(errors.map((e) => e.constructor)).toEqual([SnpTcbMismatchError, SnpChipIdMismatchError]);
    expect((errors[0] as SnpTcbMismatchError).differences).toEqual([
      { field: 'fmc', expected: 0, actual: 1 },
    ]);
  });
});
