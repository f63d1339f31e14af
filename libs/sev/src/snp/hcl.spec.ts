import { createHash, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SnpTruncatedInputError } from './errors.js';
import {
  HCL_REPORT_TYPE_TDX,
  HCL_RUNTIME_DATA_OFFSET,
  HCL_VARIABLE_DATA_OFFSET,
  hclExpectedReportData,
  HclReportError,
  readHclReport,
} from './hcl.js';
import { encodeAttestationReport } from './report-encode.js';
import { parseAttestationReport } from './report-decode.js';
import { verifySnpEvidence } from './evidence.js';
import { parsePemBundle } from './x509.js';
import { VECTOR_TIME, vectorBytes, vectorText } from './__fixtures__/vectors.js';

const REPORT = 'snp/reports/virtee-milan-vcek/report_milan.bin';
const VARIABLE = Buffer.from(JSON.stringify({ keys: [{ kid: 'HCLAkPub', kty: 'RSA', e: 'AQAB', n: 'x' }] }));

/** An HCL report as Azure's paravisor lays it out, around `report`. */
function hclBlob(
  report: Uint8Array,
  over: { magic?: string; reportType?: number; hashType?: number; varSize?: number; dataSize?: number } = {},
): Buffer {
  const b = Buffer.alloc(HCL_VARIABLE_DATA_OFFSET + VARIABLE.length);
  b.write(over.magic ?? 'HCLA', 0, 'ascii');
  b.writeUInt32LE(2, 4); // version
  b.writeUInt32LE(report.length, 8);
  b.writeUInt32LE(2, 0xc); // request type
  Buffer.from(report).copy(b, 0x20);
  const r = HCL_RUNTIME_DATA_OFFSET;
  b.writeUInt32LE(over.dataSize ?? 20 + VARIABLE.length, r);
  b.writeUInt32LE(1, r + 4);
  b.writeUInt32LE(over.reportType ?? 2, r + 8);
  b.writeUInt32LE(over.hashType ?? 1, r + 12);
  b.writeUInt32LE(over.varSize ?? VARIABLE.length, r + 16);
  VARIABLE.copy(b, HCL_VARIABLE_DATA_OFFSET);
  return b;
}

/** The real Milan report with REPORT_DATA replaced by `data` (its signature no longer verifies). */
function reportBinding(data: Uint8Array): Uint8Array {
  const parsed = parseAttestationReport(vectorBytes(REPORT));
  return encodeAttestationReport({ ...parsed, reportData: Uint8Array.from(data) });
}

describe('Azure vTPM HCL report', () => {
  it('cuts the real SNP report out at 0x20 and it verifies to AMD’s Milan root', () => {
    const real = vectorBytes(REPORT);
    const hcl = readHclReport(hclBlob(real));
    expect(Buffer.from(hcl.snpReport)).toEqual(Buffer.from(real));
    expect(hcl).toMatchObject({ version: 2, requestType: 2, runtimeDataVersion: 1, hashType: 'sha256' });
    expect(Buffer.from(hcl.variableData)).toEqual(VARIABLE);
    const [ask, ark] = parsePemBundle(vectorText('snp/reports/virtee-milan-vcek/cert_chain_milan.pem'));
    const vek = new X509Certificate(vectorBytes('snp/reports/virtee-milan-vcek/vcek_milan.der'));
    expect(verifySnpEvidence(hcl.snpReport, { ark, ask, vek }, { now: VECTOR_TIME }).ok).toBe(true);
  });

  it('names the REPORT_DATA that binds the variable data (its SHA-256, zero-padded)', () => {
    const digest = createHash('sha256').update(VARIABLE).digest();
    const hcl = readHclReport(hclBlob(reportBinding(Buffer.concat([digest, Buffer.alloc(32)]))));
    const expected = hclExpectedReportData(hcl);
    expect(expected.subarray(0, 32)).toEqual(digest);
    expect(Buffer.from(parseAttestationReport(hcl.snpReport).reportData)).toEqual(expected);
    // Variable data changed after the report was made: the binding no longer holds.
    const blob = hclBlob(reportBinding(expected));
    blob[HCL_VARIABLE_DATA_OFFSET + 3] ^= 0x01;
    const altered = readHclReport(blob);
    expect(Buffer.from(parseAttestationReport(altered.snpReport).reportData)).not.toEqual(
      hclExpectedReportData(altered),
    );
    expect(
      hclExpectedReportData(readHclReport(hclBlob(vectorBytes(REPORT), { hashType: 2 }))).subarray(48),
    ).toEqual(Buffer.alloc(16));
  });

  it.each([
    ['a wrong magic', { magic: 'HCLB' }, 'bad-magic'],
    ['a TDX report', { reportType: HCL_REPORT_TYPE_TDX }, 'not-snp'],
    ['an unknown report type', { reportType: 7 }, 'not-snp'],
    ['an unknown hash type', { hashType: 9 }, 'bad-hash-type'],
    ['variable data larger than the runtime data', { varSize: 1000, dataSize: 40 }, 'bad-variable-data-size'],
  ] as const)('refuses %s with a typed error', (_name, over, fault) => {
    const err = (() => {
      try {
        readHclReport(hclBlob(vectorBytes(REPORT), over));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(HclReportError);
    expect(err).toMatchObject({ code: 'HCL_REPORT_INVALID', fault });
  });

  it('refuses every truncation of a good blob as truncated input', () => {
    const blob = hclBlob(vectorBytes(REPORT));
    for (const len of [0, 3, 4, 0x20, 0x4c0, HCL_VARIABLE_DATA_OFFSET - 1, blob.length - 1]) {
      expect(() => readHclReport(blob.subarray(0, len)), String(len)).toThrow(SnpTruncatedInputError);
    }
    expect(() => readHclReport(blob)).not.toThrow();
  });

  it('fuzz: random and mutated blobs end in the report or a typed error, never anything else', () => {
    let seed = 0x5eed;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const good = hclBlob(vectorBytes(REPORT));
    let read = 0;
    for (let i = 0; i < 2000; i++) {
      const blob =
        i % 2 === 0
          ? Buffer.from(Array.from({ length: Math.floor(rand() * 1400) }, () => Math.floor(rand() * 256)))
          : Buffer.from(good);
      if (i % 2 === 1) {
        for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) {
          const at =
            rand() < 0.5 ? Math.floor(rand() * 32) : HCL_RUNTIME_DATA_OFFSET + Math.floor(rand() * 20);
          blob[at] = Math.floor(rand() * 256);
        }
      }
      if (i % 2 === 0) blob.write('HCLA', 0, 'ascii');
      try {
        const hcl = readHclReport(blob);
        expect(hcl.snpReport).toHaveLength(1184);
        read++;
      } catch (e) {
        expect(e instanceof HclReportError || e instanceof SnpTruncatedInputError, String(e)).toBe(true);
      }
    }
    expect(read).toBeGreaterThan(0);
  });
});
