import { bytesEqual, toHex } from './bytes.js';
import { vekBindingErrors } from './binding.js';
import { type SnpCertChain, type SnpChainOptions, verifySnpCertChain } from './chain.js';
import {
  SnpError,
  SnpPolicyViolationError,
  SnpReportFieldMismatchError,
  SnpSigningKeyMismatchError,
  SnpTcbTooLowError,
} from './errors.js';
import type { SnpGeneration } from './generation.js';
import { policyViolations, type SnpPolicyRequirements } from './policy.js';
import type { SnpAttestationReport } from './report.js';
import { parseAttestationReport } from './report-decode.js';
import type { SnpReportFieldName } from './report-layout.js';
import { verifyReportSignature } from './signature.js';
import { tcbShortfall, type TcbVersion } from './tcb.js';
import type { SnpVekInfo, SnpVekKind } from './vek.js';

/** What {@link verifySnpEvidence} requires beyond a valid chain and signature; unset = not checked. */
export interface SnpEvidenceOptions extends SnpChainOptions {
  /** Expected REPORT_DATA; shorter values are compared zero-padded to 64 bytes. */
  readonly expectedReportData?: Uint8Array;
  /** Expected MEASUREMENT (launch digest, 48 bytes). */
  readonly expectedMeasurement?: Uint8Array;
  /** Expected HOST_DATA (32 bytes). */
  readonly expectedHostData?: Uint8Array;
  /** Expected VMPL the report was requested at. */
  readonly expectedVmpl?: number;
  /** REPORTED_TCB (the TCB the VCEK certifies) must be at least this, componentwise. */
  readonly minimumTcb?: TcbVersion;
  /** Guest policy requirements; the default rejects DEBUG-allowed guests. */
  readonly policy?: SnpPolicyRequirements;
  /** Endorsement-key kinds accepted [both VCEK and VLEK]. */
  readonly allowedSigningKeys?: readonly SnpVekKind[];
}

/** Outcome of one check: passed, failed with its typed error, or skipped with why. */
export type SnpCheck =
  | { readonly status: 'passed' }
  | { readonly status: 'failed'; readonly error: SnpError }
  | { readonly status: 'skipped'; readonly reason: string };

/** Names of the checks in an {@link SnpEvidenceVerdict}, in the order they run. */
export const SNP_EVIDENCE_CHECKS = [
  'chain',
  'report',
  'signature',
  'binding',
  'signingKey',
  'tcb',
  'reportData',
  'measurement',
  'hostData',
  'vmpl',
  'policy',
] as const;

/** The name of one evidence check. */
export type SnpEvidenceCheckName = (typeof SNP_EVIDENCE_CHECKS)[number];

/** Structured result of {@link verifySnpEvidence}. `ok` only when nothing failed and nothing essential was skipped. */
export interface SnpEvidenceVerdict {
  readonly ok: boolean;
  readonly checks: Readonly<Record<SnpEvidenceCheckName, SnpCheck>>;
  /** Every failure, in check order (binding may contribute several). */
  readonly errors: readonly SnpError[];
  readonly generation?: SnpGeneration;
  readonly report?: SnpAttestationReport;
  readonly vek?: SnpVekInfo;
}

const PASSED: SnpCheck = { status: 'passed' };
const skipped = (reason: string): SnpCheck => ({ status: 'skipped', reason });

function run(fn: () => void): SnpCheck {
  try {
    fn();
    return PASSED;
  } catch (error) {
    if (error instanceof SnpError) return { status: 'failed', error };
    throw error;
  }
}

function compareField(
  field: SnpReportFieldName,
  actual: Uint8Array,
  expected: Uint8Array | undefined,
): SnpCheck {
  if (!expected) return skipped('no expected value given');
  const padded = new Uint8Array(actual.length);
  padded.set(expected.subarray(0, actual.length));
  const same = expected.length <= actual.length && bytesEqual(actual, padded);
  return same
    ? PASSED
    : { status: 'failed', error: new SnpReportFieldMismatchError(field, toHex(expected), toHex(actual)) };
}

/** The report-content checks, run once the report parsed. */
function reportChecks(
  report: SnpAttestationReport,
  o: SnpEvidenceOptions,
): Partial<Record<SnpEvidenceCheckName, SnpCheck>> {
  const minimum = o.minimumTcb;
  return {
    signingKey: run(() => {
      const allowed = o.allowedSigningKeys ?? ['VCEK', 'VLEK'];
      const key = report.keyInfo.signingKey;
      if (key === 'none' || !allowed.includes(key))
        throw new SnpSigningKeyMismatchError(key, allowed.join(' or '));
    }),
    tcb: minimum
      ? run(() => {
          const short = tcbShortfall(report.reportedTcb, minimum);
          if (short.length > 0) throw new SnpTcbTooLowError(short);
        })
      : skipped('no minimum TCB given'),
    reportData: compareField('REPORT_DATA', report.reportData, o.expectedReportData),
    measurement: compareField('MEASUREMENT', report.measurement, o.expectedMeasurement),
    hostData: compareField('HOST_DATA', report.hostData, o.expectedHostData),
    vmpl:
      o.expectedVmpl === undefined
        ? skipped('no expected VMPL given')
        : report.vmpl === o.expectedVmpl
          ? PASSED
          : {
              status: 'failed',
              error: new SnpReportFieldMismatchError('VMPL', String(o.expectedVmpl), String(report.vmpl)),
            },
    policy: run(() => {
      const violations = policyViolations(report.policy, o.policy);
      if (violations.length > 0) throw new SnpPolicyViolationError(violations);
    }),
  };
}

/**
 * Verifies SNP evidence end to end: the VCEK/VLEK chain up to a pinned ARK, the report (parsed in the
 * chain's product line), its signature with the chain's endorsement key, the binding of report and
 * certificate (TCB, chip id, key kind), then the caller's expectations (REPORT_DATA, MEASUREMENT,
 * HOST_DATA, VMPL, minimum TCB, policy). Every check is reported; nothing throws for bad evidence.
 */
export function verifySnpEvidence(
  report: Uint8Array,
  chain: SnpCertChain,
  options: SnpEvidenceOptions = {},
): SnpEvidenceVerdict {
  const checks = Object.fromEntries(
    SNP_EVIDENCE_CHECKS.map((c) => [c, skipped('an earlier check failed')]),
  ) as Record<SnpEvidenceCheckName, SnpCheck>;
  const chainVerdict = verifySnpCertChain(chain, options);
  checks.chain = chainVerdict.ok ? PASSED : { status: 'failed', error: chainVerdict.error };

  let parsed: SnpAttestationReport | undefined;
  checks.report = run(() => {
    parsed = parseAttestationReport(report, chainVerdict.ok ? { generation: chainVerdict.generation } : {});
  });
  let bindingErrors: SnpError[] = [];
  if (chainVerdict.ok) {
    checks.signature = run(() => verifyReportSignature(report, chainVerdict.vekPublicKey));
    if (parsed) {
      bindingErrors = vekBindingErrors(parsed, chainVerdict.vek);
      checks.binding = bindingErrors.length === 0 ? PASSED : { status: 'failed', error: bindingErrors[0] };
    }
  }
  if (parsed) Object.assign(checks, reportChecks(parsed, options));

  const errors: SnpError[] = [];
  for (const name of SNP_EVIDENCE_CHECKS) {
    const check = checks[name];
    if (check.status !== 'failed') continue;
    if (name === 'binding') errors.push(...bindingErrors);
    else errors.push(check.error);
  }
  const essential: SnpEvidenceCheckName[] = [
    'chain',
    'report',
    'signature',
    'binding',
    'signingKey',
    'policy',
  ];
  const ok = errors.length === 0 && essential.every((c) => checks[c].status === 'passed');
  return {
    ok,
    checks,
    errors,
    ...(chainVerdict.ok ? { generation: chainVerdict.generation, vek: chainVerdict.vek } : {}),
    ...(parsed ? { report: parsed } : {}),
  };
}
