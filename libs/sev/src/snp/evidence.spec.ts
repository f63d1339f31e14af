import { describe, expect, it } from 'vitest';
import {
  flipBit,
  SNP_REPORT_VECTORS,
  VECTOR_TIME,
  vectorBytes,
  vectorJson,
  vectorText,
} from './__fixtures__/vectors.js';
import { assembleSnpCertChain } from './chain-input.js';
import type { SnpCertChain } from './chain.js';
import {
  SnpChainError,
  SnpPolicyViolationError,
  SnpReportFieldMismatchError,
  SnpSignatureError,
  SnpSigningKeyMismatchError,
  SnpTcbMismatchError,
  SnpTcbTooLowError,
  SnpTruncatedInputError,
} from './errors.js';
import { type SnpEvidenceOptions, verifySnpEvidence } from './evidence.js';
import { SNP_REPORT_FIELDS } from './report-layout.js';

const fields = vectorJson<{ reports: Record<string, Record<string, string>> }>(
  'snp/reports/report-fields.json',
).reports;
const unhex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));
const [virtee, gosevguest, trustee] = SNP_REPORT_VECTORS;
const chainOf = (v: (typeof SNP_REPORT_VECTORS)[number]): SnpCertChain =>
  assembleSnpCertChain(vectorBytes(v.vek), vectorText(v.cas));
const at: SnpEvidenceOptions = { now: VECTOR_TIME };

const statuses = (checks: Record<string, { status: string }>) =>
  Object.fromEntries(Object.entries(checks).map(([k, c]) => [k, c.status]));

describe('verifySnpEvidence on real evidence', () => {
  it.each(SNP_REPORT_VECTORS)('$name: every check passes with the expected values', (v) => {
    const f = fields[v.name];
    const verdict = verifySnpEvidence(vectorBytes(v.report), chainOf(v), {
      ...at,
      expectedReportData: unhex(f.report_data),
      expectedMeasurement: unhex(f.measurement),
      expectedHostData: new Uint8Array(32),
      expectedVmpl: Number(f.vmpl),
      minimumTcb: { layout: 'milan-genoa', bootLoader: 2, tee: 0, snp: 5, microcode: 0x44 },
      policy: { allowDebug: v.name === 'gosevguest-milan-vcek' },
    });
    expect(verdict.errors).toEqual([]);
    expect(verdict.ok).toBe(true);
    expect(Object.values(statuses(verdict.checks)).every((s) => s === 'passed')).toBe(true);
    expect([verdict.generation, verdict.vek?.kind, verdict.report?.version]).toEqual([
      'milan',
      v.kind,
      v.version,
    ]);
  });

  it('rejects the go-sev-guest report by default: its policy allows DEBUG', () => {
    const verdict = verifySnpEvidence(vectorBytes(gosevguest.report), chainOf(gosevguest), at);
    expect(verdict.ok).toBe(false);
    expect(verdict.errors).toHaveLength(1);
    expect(verdict.errors[0]).toBeInstanceOf(SnpPolicyViolationError);
    expect(statuses(verdict.checks)).toMatchObject({
      chain: 'passed',
      signature: 'passed',
      binding: 'passed',
      policy: 'failed',
    });
  });

  it('accepts a shorter expected REPORT_DATA compared zero-padded', () => {
    const verdict = verifySnpEvidence(vectorBytes(gosevguest.report), chainOf(gosevguest), {
      ...at,
      policy: { allowDebug: true },
      expectedReportData: Uint8Array.of(1, 2, 3, 4, 5),
    });
    expect(verdict.ok).toBe(true);
  });
});

describe('verifySnpEvidence failures', () => {
  it('a flipped REPORT_DATA bit: bad signature and, with an expectation, a REPORT_DATA mismatch', () => {
    const bad = flipBit(vectorBytes(virtee.report), SNP_REPORT_FIELDS.REPORT_DATA[0]);
    const verdict = verifySnpEvidence(bad, chainOf(virtee), {
      ...at,
      expectedReportData: unhex(fields[virtee.name].report_data),
    });
    expect(verdict.ok).toBe(false);
    expect(verdict.errors.map((e) => e.constructor)).toEqual([
      SnpSignatureError,
      SnpReportFieldMismatchError,
    ]);
  });

  it('a report whose REPORTED_TCB disagrees with its VCEK', () => {
    const bytes = vectorBytes(virtee.report);
    bytes[SNP_REPORT_FIELDS.REPORTED_TCB[0] + 7] = 0x74; // ucode 0x73 -> 0x74
    const verdict = verifySnpEvidence(bytes, chainOf(virtee), at);
    expect(statuses(verdict.checks)).toMatchObject({
      chain: 'passed',
      report: 'passed',
      signature: 'failed',
      binding: 'failed',
    });
    const binding = verdict.checks.binding;
    expect(binding.status === 'failed' && binding.error).toBeInstanceOf(SnpTcbMismatchError);
  });

  it('a Milan report and VCEK presented with the Genoa ARK and ASK', () => {
    const chain = {
      ark: vectorText('snp/amd-ca/genoa/ark.pem'),
      ask: vectorText('snp/amd-ca/genoa/ask.pem'),
      vek: vectorBytes(virtee.vek),
    };
    const verdict = verifySnpEvidence(vectorBytes(virtee.report), chain, at);
    expect(verdict.ok).toBe(false);
    expect(verdict.errors[0]).toBeInstanceOf(SnpChainError);
    expect(verdict.errors[0]).toMatchObject({ link: 'vek', reason: 'wrong-generation' });
    expect(statuses(verdict.checks)).toMatchObject({
      chain: 'failed',
      report: 'passed',
      signature: 'skipped',
      binding: 'skipped',
    });
  });

  it('a truncated report', () => {
    const verdict = verifySnpEvidence(vectorBytes(trustee.report).subarray(0, 1000), chainOf(trustee), at);
    expect(verdict.ok).toBe(false);
    expect(verdict.checks.report).toMatchObject({
      status: 'failed',
      error: expect.any(SnpTruncatedInputError),
    });
    expect(verdict.report).toBeUndefined();
  });

  it('expectations the report does not meet: measurement, VMPL, minimum TCB, key kind', () => {
    const verdict = verifySnpEvidence(vectorBytes(trustee.report), chainOf(trustee), {
      ...at,
      expectedMeasurement: new Uint8Array(48),
      expectedVmpl: 0,
      minimumTcb: { layout: 'milan-genoa', bootLoader: 4, tee: 0, snp: 25, microcode: 0xd9 },
      allowedSigningKeys: ['VCEK'],
    });
    expect(verdict.ok).toBe(false);
    expect(statuses(verdict.checks)).toMatchObject({
      chain: 'passed',
      signature: 'passed',
      binding: 'passed',
      signingKey: 'failed',
      tcb: 'failed',
      measurement: 'failed',
      vmpl: 'failed',
    });
    expect(verdict.errors.map((e) => e.constructor)).toEqual([
      SnpSigningKeyMismatchError,
      SnpTcbTooLowError,
      SnpReportFieldMismatchError,
      SnpReportFieldMismatchError,
    ]);
  });

  it('an expired VLEK when checked at the current time after 2025-12-10', () => {
    const verdict = verifySnpEvidence(vectorBytes(trustee.report), chainOf(trustee), {
      now: new Date('2026-02-01T00:00:00Z'),
    });
    expect(verdict.errors[0]).toMatchObject({ link: 'vek', reason: 'expired' });
  });
});
