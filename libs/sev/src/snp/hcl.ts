import { createHash } from 'node:crypto';
import { SnpError, SnpTruncatedInputError } from './errors.js';
import { SNP_REPORT_SIZE } from './report-layout.js';

/**
 * Azure's vTPM HCL report: on an Azure SEV-SNP confidential VM the guest does not read its attestation
 * report from `/dev/sev-guest`; the paravisor (HCL) puts it, wrapped, in a vTPM NV index. The blob:
 *
 * ```
 * offset  size  field
 * 0x000      4  signature "HCLA"
 * 0x004      4  version (LE32)
 * 0x008      4  report size (LE32)
 * 0x00c      4  request type (LE32)
 * 0x010      4  status (LE32)
 * 0x014     12  reserved
 * 0x020   1184  hardware report: the SNP ATTESTATION_REPORT (a TDX TD report, shorter, for TDX)
 * 0x4c0      4  runtime data size (LE32)
 * 0x4c4      4  runtime data version (LE32)
 * 0x4c8      4  report type (LE32): 2 SNP, 4 TDX
 * 0x4cc      4  report-data hash type (LE32): 1 SHA-256, 2 SHA-384, 3 SHA-512
 * 0x4d0      4  variable data size (LE32)
 * 0x4d4      …  variable data (JSON: the vTPM's attestation key `HCLAkPub`, …)
 * ```
 *
 * The report binds the variable data: its REPORT_DATA starts with the hash of the variable data (the
 * rest zero). This reader cuts the blob; verify the SNP report itself with `verifySnpEvidence`.
 */

/** "HCLA": the first four bytes of an HCL report. */
export const HCL_REPORT_MAGIC = Buffer.from('HCLA', 'ascii');
/** Offset of the hardware (SNP) report in an HCL report. */
export const HCL_SNP_REPORT_OFFSET = 0x20;
/** Offset of the runtime data header, after the largest hardware report. */
export const HCL_RUNTIME_DATA_OFFSET = HCL_SNP_REPORT_OFFSET + SNP_REPORT_SIZE;
/** Offset of the variable data. */
export const HCL_VARIABLE_DATA_OFFSET = HCL_RUNTIME_DATA_OFFSET + 20;
/** Report type of an SNP report in the runtime data header. */
export const HCL_REPORT_TYPE_SNP = 2;
/** Report type of a TDX report. */
export const HCL_REPORT_TYPE_TDX = 4;

const HASH_TYPES = { 1: 'sha256', 2: 'sha384', 3: 'sha512' } as const;
/** The hash the report's REPORT_DATA holds of the variable data. */
export type HclHashName = (typeof HASH_TYPES)[keyof typeof HASH_TYPES];

/** Why an HCL report could not be read. */
export type HclReportFault = 'bad-magic' | 'not-snp' | 'bad-hash-type' | 'bad-variable-data-size';

/** An HCL report that is not one: its `fault` says why (a short blob is {@link SnpTruncatedInputError}). */
export class HclReportError extends SnpError {
  readonly code = 'HCL_REPORT_INVALID';
  constructor(
    readonly fault: HclReportFault,
    detail: string,
  ) {
    super(`HCL report: ${detail}`);
  }
}

/** What an HCL report holds. */
export interface HclReport {
  readonly version: number;
  readonly requestType: number;
  readonly status: number;
  /** The SNP ATTESTATION_REPORT (1184 bytes, a view into the input). */
  readonly snpReport: Uint8Array;
  readonly runtimeDataVersion: number;
  readonly hashType: HclHashName;
  /** The variable data the report binds (a view into the input). */
  readonly variableData: Uint8Array;
}

/**
 * Reads an Azure vTPM HCL report that wraps an SNP report. Typed errors: a blob shorter than its fixed
 * part or than the variable data it announces is {@link SnpTruncatedInputError}; a wrong magic, a TDX
 * report, an unknown hash type or a variable data size beyond the runtime data is {@link HclReportError}.
 */
export function readHclReport(bytes: Uint8Array): HclReport {
  if (bytes.length < HCL_VARIABLE_DATA_OFFSET) {
    throw new SnpTruncatedInputError('HCL report', HCL_VARIABLE_DATA_OFFSET, bytes.length);
  }
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!b.subarray(0, 4).equals(HCL_REPORT_MAGIC)) {
    throw new HclReportError('bad-magic', `signature is 0x${b.subarray(0, 4).toString('hex')}, not "HCLA"`);
  }
  const u32 = (at: number) => b.readUInt32LE(at);
  const r = HCL_RUNTIME_DATA_OFFSET;
  const reportType = u32(r + 8);
  if (reportType !== HCL_REPORT_TYPE_SNP) {
    const what = reportType === HCL_REPORT_TYPE_TDX ? 'a TDX report' : `report type ${reportType}`;
    throw new HclReportError('not-snp', `it holds ${what}, not an SNP report`);
  }
  const hashType = HASH_TYPES[u32(r + 12) as keyof typeof HASH_TYPES];
  if (!hashType) throw new HclReportError('bad-hash-type', `unknown report-data hash type ${u32(r + 12)}`);
  const dataSize = u32(r);
  const varSize = u32(r + 16);
  // The runtime data size counts its 20-byte header and the variable data.
  if (varSize + 20 > dataSize) {
    throw new HclReportError(
      'bad-variable-data-size',
      `variable data of ${varSize} bytes does not fit runtime data of ${dataSize}`,
    );
  }
  const end = HCL_VARIABLE_DATA_OFFSET + varSize;
  if (bytes.length < end) throw new SnpTruncatedInputError('HCL report variable data', end, bytes.length);
  return {
    version: u32(4),
    requestType: u32(0xc),
    status: u32(0x10),
    snpReport: bytes.subarray(HCL_SNP_REPORT_OFFSET, HCL_RUNTIME_DATA_OFFSET),
    runtimeDataVersion: u32(r + 4),
    hashType,
    variableData: bytes.subarray(HCL_VARIABLE_DATA_OFFSET, end),
  };
}

/**
 * The REPORT_DATA the wrapped SNP report must carry: the hash of the variable data, zero-padded to 64
 * bytes (give it to `verifySnpEvidence` as `expectedReportData`).
 */
export function hclExpectedReportData(hcl: HclReport): Buffer {
  const out = Buffer.alloc(64);
  createHash(hcl.hashType).update(hcl.variableData).digest().copy(out);
  return out;
}
