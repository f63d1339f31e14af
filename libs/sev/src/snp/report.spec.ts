import { describe, expect, it } from 'vitest';
import {
  flipBit,
  hex,
  SNP_REPORT_VECTORS,
  vectorBytes,
  vectorJson,
  vectorText,
} from './__fixtures__/vectors.js';
import {
  SnpGenerationMismatchError,
  SnpInvalidFieldError,
  SnpReservedFieldError,
  SnpTruncatedInputError,
  SnpUnknownGenerationError,
  SnpUnsupportedReportVersionError,
} from './errors.js';
import { encodeGuestPolicy } from './policy.js';
import { parseAttestationReport, reportSignedBytes } from './report-decode.js';
import { encodeAttestationReport } from './report-encode.js';
import { SNP_REPORT_FIELDS, SNP_REPORT_SIGNED_SIZE, SNP_REPORT_SIZE } from './report-layout.js';
import { encodeTcbVersion } from './tcb.js';

type Fields = Record<string, string | number>;
const known = vectorJson<{ reports: Record<string, Fields> }>('snp/reports/report-fields.json').reports;

function withU32(bytes: Uint8Array, offset: number, value: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  new DataView(out.buffer).setUint32(offset, value, true);
  return out;
}

const milan = vectorBytes('snp/reports/virtee-milan-vcek/report_milan.bin');
const vlekReport = vectorBytes('snp/reports/trustee-milan-vlek/report.bin');

describe('parseAttestationReport on real reports', () => {
  it.each(SNP_REPORT_VECTORS)('$name: every field matches report-fields.json', (v) => {
    const f = known[v.name];
    const r = parseAttestationReport(vectorBytes(v.report));
    const version = (x: { major: number; minor: number; build: number }) =>
      `${x.major}.${x.minor}.${x.build}`;
    expect({
      version: r.version,
      guest_svn: r.guestSvn,
      policy: `0x${encodeGuestPolicy(r.policy).toString(16)}`,
      family_id: hex(r.familyId),
      image_id: hex(r.imageId),
      vmpl: r.vmpl,
      signature_algo: r.signatureAlgo,
      current_tcb_raw: hex(encodeTcbVersion(r.currentTcb)),
      platform_info: `0x${r.platformInfo.raw.toString(16)}`,
      report_data: hex(r.reportData),
      measurement: hex(r.measurement),
      host_data: hex(r.hostData),
      id_key_digest: hex(r.idKeyDigest),
      author_key_digest: hex(r.authorKeyDigest),
      report_id: hex(r.reportId),
      report_id_ma: hex(r.reportIdMa),
      reported_tcb_raw: hex(encodeTcbVersion(r.reportedTcb)),
      cpuid_fam_id: r.cpuid?.family ?? 0,
      cpuid_mod_id: r.cpuid?.model ?? 0,
      cpuid_step: r.cpuid?.stepping ?? 0,
      chip_id: hex(r.chipId),
      committed_tcb_raw: hex(encodeTcbVersion(r.committedTcb)),
      current_version: version(r.currentVersion),
      committed_version: version(r.committedVersion),
      launch_tcb_raw: hex(encodeTcbVersion(r.launchTcb)),
      signature_r_le: hex(r.signature.r),
      signature_s_le: hex(r.signature.s),
    }).toEqual(
      Object.fromEntries(
        Object.entries(f).filter(([k]) => !/^(file|signed_by|key_info|.*mit_vector)$/.test(k)),
      ),
    );
    expect(r.version).toBe(v.version);
    expect(r.keyInfo.signingKey).toBe(v.kind);
    expect(Number(f.key_info)).toBe(v.kind === 'VLEK' ? 4 : 0);
    expect(r.launchMitVector).toBeUndefined();
  });

  it.each(SNP_REPORT_VECTORS)('$name: encode(parse(bytes)) reproduces the bytes', (v) => {
    const bytes = vectorBytes(v.report);
    expect(hex(encodeAttestationReport(parseAttestationReport(bytes)))).toBe(hex(bytes));
  });

  it('decodes the hex-text Milan report to the same bytes as the .bin', () => {
    expect(hex(milan)).toBe(vectorText('snp/reports/virtee-milan-vcek/report_milan.hex').toLowerCase());
  });

  it('decodes the Milan TCB layout: bl 3, tee 0, snp 8, ucode 0x73', () => {
    const r = parseAttestationReport(milan);
    expect(r.reportedTcb).toEqual({ layout: 'milan-genoa', bootLoader: 3, tee: 0, snp: 8, microcode: 0x73 });
    expect(r.generation).toBeUndefined(); // v2 Milan/Genoa: layout known, product line not
    expect(r.policy).toMatchObject({ abiMajor: 0, abiMinor: 0, smtAllowed: true, debugAllowed: false });
  });

  it('reads the v3 VLEK report: CPUID Milan, VMPL 1, KEY_INFO VLEK, PLATFORM_INFO 0x27', () => {
    const r = parseAttestationReport(vlekReport);
    expect(r.cpuid).toEqual({ family: 0x19, model: 1, stepping: 1 });
    expect(r.generation).toBe('milan');
    expect(r.vmpl).toBe(1);
    expect(r.keyInfo).toEqual({ authorKeyEn: false, maskChipKey: false, signingKey: 'VLEK' });
    expect(r.platformInfo).toMatchObject({
      smtEnabled: true,
      tsmeEnabled: true,
      eccEnabled: true,
      aliasCheckComplete: true,
    });
    expect([r.currentTcb.microcode, r.committedTcb.microcode, r.reportedTcb.microcode]).toEqual([
      0xdc, 0xdb, 0xd9,
    ]);
  });

  it('returns the signed portion [0, 0x2A0)', () => {
    const signed = reportSignedBytes(milan);
    expect(signed.length).toBe(SNP_REPORT_SIGNED_SIZE);
    expect(hex(signed)).toBe(hex(milan.subarray(0, 0x2a0)));
  });
});

describe('report versions', () => {
  it('parses and re-encodes a version 5 report with mitigation vectors', () => {
    let v5 = withU32(vlekReport, 0, 5);
    new DataView(v5.buffer).setBigUint64(SNP_REPORT_FIELDS.LAUNCH_MIT_VECTOR[0], 0x5n, true);
    new DataView(v5.buffer).setBigUint64(SNP_REPORT_FIELDS.CURRENT_MIT_VECTOR[0], 0x7n, true);
    const r = parseAttestationReport(v5);
    expect([r.version, r.launchMitVector, r.currentMitVector]).toEqual([5, 5n, 7n]);
    expect(hex(encodeAttestationReport(r))).toBe(hex(v5));
    v5 = withU32(v5, 0, 3);
    expect(() => parseAttestationReport(v5)).toThrow(SnpReservedFieldError); // mitigation bytes reserved before v5
  });

  it.each([0, 1, 6, 0xffffffff])('rejects version %i', (version) => {
    const err = (() => {
      try {
        parseAttestationReport(withU32(milan, 0, version));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(SnpUnsupportedReportVersionError);
    expect((err as SnpUnsupportedReportVersionError).version).toBe(version);
  });

  it('rejects CPUID bytes in a v2 report (reserved there)', () => {
    expect(() => parseAttestationReport(flipBit(milan, 0x188))).toThrow(SnpReservedFieldError);
  });

  it('needs the product line for a v3 report with an unknown CPUID, and checks a supplied one', () => {
    const unknown = Uint8Array.from(vlekReport);
    unknown[0x188] = 0x17; // Rome: no SNP
    expect(() => parseAttestationReport(unknown)).toThrow(SnpUnknownGenerationError);
    expect(parseAttestationReport(unknown, { generation: 'milan' }).generation).toBe('milan');
    expect(() => parseAttestationReport(vlekReport, { generation: 'genoa' })).toThrow(
      SnpGenerationMismatchError,
    );
  });

  it('decodes a v2 report with an 8-byte CHIP_ID in the Turin layout', () => {
    const turinLike = Uint8Array.from(milan);
    turinLike.fill(0, 0x1a8, 0x1e0);
    // Milan TCB 03 00 00 00 00 00 08 73 has SNP in byte 6, reserved in the Turin layout.
    expect(() => parseAttestationReport(turinLike)).toThrow(SnpReservedFieldError);
    for (const [offset] of [
      SNP_REPORT_FIELDS.CURRENT_TCB,
      SNP_REPORT_FIELDS.REPORTED_TCB,
      SNP_REPORT_FIELDS.COMMITTED_TCB,
      SNP_REPORT_FIELDS.LAUNCH_TCB,
    ]) {
      turinLike.set([1, 3, 0, 8, 0, 0, 0, 0x73], offset);
    }
    const r = parseAttestationReport(turinLike);
    expect(r.generation).toBe('turin');
    expect(r.reportedTcb).toEqual({
      layout: 'turin',
      fmc: 1,
      bootLoader: 3,
      tee: 0,
      snp: 8,
      microcode: 0x73,
    });
    expect(hex(encodeAttestationReport(r))).toBe(hex(turinLike));
  });
});

describe('malformed reports', () => {
  it.each([0, 3, 100, SNP_REPORT_SIZE - 1])('rejects a report truncated to %i bytes', (n) => {
    expect(() => parseAttestationReport(milan.subarray(0, n))).toThrow(SnpTruncatedInputError);
    expect(() => reportSignedBytes(milan.subarray(0, n))).toThrow(SnpTruncatedInputError);
  });

  it('rejects a report with trailing bytes', () => {
    const long = new Uint8Array(SNP_REPORT_SIZE + 1);
    long.set(milan);
    expect(() => parseAttestationReport(long)).toThrow(SnpTruncatedInputError);
  });

  it.each([
    ['RESERVED_04C', 0x04c],
    ['RESERVED_18B', 0x19f],
    ['RESERVED_1EB', 0x1eb],
    ['RESERVED_1EF', 0x1ef],
    ['RESERVED_208', 0x29f],
    ['SIGNATURE_R padding', 0x2a0 + 48],
    ['SIGNATURE_S padding', 0x2e8 + 71],
    ['SIGNATURE_RESERVED', 0x49f],
    ['TCB reserved byte', 0x180 + 3],
    ['POLICY reserved bit', 0x008 + 4],
    ['KEY_INFO reserved bit', 0x048 + 1],
  ])('rejects a set bit in %s', (_name, offset) => {
    expect(() => parseAttestationReport(flipBit(milan, offset, 7))).toThrow(SnpReservedFieldError);
  });

  it('rejects POLICY without the must-be-one bit 17', () => {
    expect(() => parseAttestationReport(flipBit(milan, 0x00a, 1))).toThrow(SnpReservedFieldError);
  });

  it('rejects an unknown SIGNATURE_ALGO and SIGNING_KEY', () => {
    expect(() => parseAttestationReport(withU32(milan, 0x034, 2))).toThrow(SnpInvalidFieldError);
    expect(() => parseAttestationReport(withU32(milan, 0x048, 3 << 2))).toThrow(SnpInvalidFieldError);
  });
});
