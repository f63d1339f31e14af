import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  amdAskArkUrl,
  kdsCekUrl,
  kdsCertChainUrl,
  kdsCrlUrl,
  kdsVcekUrl,
  kdsVlekUrl,
  KdsRequestError,
} from './kds.js';
import { parseAttestationReport, readVekInfo } from './snp/index.js';
import { hex, vectorBytes } from './snp/__fixtures__/vectors.js';

describe('AMD KDS addresses', () => {
  it('names the VCEK of the real Milan report by its CHIP_ID and REPORTED_TCB', () => {
    const report = parseAttestationReport(vectorBytes('snp/reports/virtee-milan-vcek/report_milan.bin'));
    const url = kdsVcekUrl('milan', report.chipId, report.reportedTcb);
    expect(url).toBe(
      `https://kdsintf.amd.com/vcek/v1/Milan/${hex(report.chipId)}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115`,
    );
  });

  it('the URL names the chip and TCB of the VCEK the KDS served for that report', () => {
    const report = parseAttestationReport(vectorBytes('snp/reports/virtee-milan-vcek/report_milan.bin'));
    const vcek = readVekInfo(
      new X509Certificate(vectorBytes('snp/reports/virtee-milan-vcek/vcek_milan.der')),
    );
    const url = new URL(kdsVcekUrl('milan', report.chipId, report.reportedTcb));
    expect(url.pathname.split('/').pop()).toBe(hex(vcek.hwId!));
    expect(Number(url.searchParams.get('snpSPL'))).toBe(vcek.tcb.snp);
    expect(Number(url.searchParams.get('ucodeSPL'))).toBe(vcek.tcb.microcode);
  });

  it('names a Turin chip by the first 8 bytes of its id and adds the FMC SPL', () => {
    const chipId = new Uint8Array(64);
    chipId.set(Buffer.from('1e550a8ee5cf9f4d', 'hex'));
    const url = kdsVcekUrl('turin', chipId, {
      layout: 'turin',
      fmc: 1,
      bootLoader: 2,
      tee: 3,
      snp: 4,
      microcode: 5,
    });
    expect(url).toBe(
      'https://kdsintf.amd.com/vcek/v1/Turin/1e550a8ee5cf9f4d?fmcSPL=1&blSPL=2&teeSPL=3&snpSPL=4&ucodeSPL=5',
    );
  });

  it('refuses a masked (zero) chip id, a short id, and a Turin TCB without FMC', () => {
    const tcb = { layout: 'milan-genoa', bootLoader: 1, tee: 0, snp: 1, microcode: 1 } as const;
    expect(() => kdsVcekUrl('milan', new Uint8Array(64), tcb)).toThrow(KdsRequestError);
    expect(() => kdsVcekUrl('milan', new Uint8Array(8).fill(1), tcb)).toThrow(/64 bytes/);
    expect(() => kdsVcekUrl('turin', new Uint8Array(64).fill(1), { ...tcb, layout: 'turin' })).toThrow(/FMC/);
  });

  it('files the real VLEK under its VLEK chain URL, naming the TCB of the report it signed and its cloud provider', () => {
    const report = parseAttestationReport(vectorBytes('snp/reports/trustee-milan-vlek/report.bin'));
    const vlek = readVekInfo(new X509Certificate(vectorBytes('snp/reports/trustee-milan-vlek/vlek.der')));
    expect(vlek.kind).toBe('VLEK');
    const url = kdsVlekUrl(vlek.generation, vlek.tcb, vlek.cspId);
    expect(url).toBe(
      'https://kdsintf.amd.com/vlek/v1/Milan/cert_chain#blSPL=4&teeSPL=0&snpSPL=24&ucodeSPL=217' +
        '&cspId=CN%3Dcc-us-east-2.amazonaws.com',
    );
    // The report (CHIP_ID zero: no VCEK address) names the same VLEK by its REPORTED_TCB: the prefix.
    expect(report.keyInfo.signingKey).toBe('VLEK');
    expect(url.startsWith(kdsVlekUrl('milan', report.reportedTcb))).toBe(true);
    expect(() => kdsVcekUrl('milan', report.chipId, report.reportedTcb)).toThrow(/VLEK/);
    // What production fetches: the fragment is not sent, the chain (ASVK then ARK) is.
    const u = new URL(url);
    expect(`${u.origin}${u.pathname}`).toBe(kdsCertChainUrl('milan', 'vlek'));
    expect(() => kdsVlekUrl('turin', { ...vlek.tcb, layout: 'turin' })).toThrow(/FMC/);
  });

  it('builds chain, CRL, CEK and ASK/ARK addresses', () => {
    expect(kdsCertChainUrl('genoa')).toBe('https://kdsintf.amd.com/vcek/v1/Genoa/cert_chain');
    expect(kdsCertChainUrl('milan', 'vlek')).toBe('https://kdsintf.amd.com/vlek/v1/Milan/cert_chain');
    expect(kdsCrlUrl('turin')).toBe('https://kdsintf.amd.com/vcek/v1/Turin/crl');
    expect(kdsCrlUrl('genoa', 'vlek')).toBe('https://kdsintf.amd.com/vlek/v1/Genoa/crl');
    expect(kdsCekUrl(new Uint8Array(64).fill(0xab))).toBe(
      `https://kdsintf.amd.com/cek/id/${'ab'.repeat(64)}`,
    );
    expect(() => kdsCekUrl(new Uint8Array(10))).toThrow(KdsRequestError);
    expect(amdAskArkUrl('rome')).toBe('https://developer.amd.com/wp-content/resources/ask_ark_rome.cert');
  });
});
