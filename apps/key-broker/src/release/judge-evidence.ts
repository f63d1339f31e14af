import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import {
  guestEvidenceMac,
  guestEvidenceReportData,
  type SevEvidence,
  type SnpEvidence,
  type OwnerPolicy,
  type ProductLine,
  type RuleResult,
} from '@ccm/contracts';
import {
  AMD_SNP_CA_SHA256,
  formatTcb,
  policyViolations,
  SNP_GENERATIONS,
  tcbShortfall,
  verifySnpEvidence,
  type SnpAttestationReport,
  type SnpGeneration,
  type SnpTrustedArks,
} from '@ccm/sev';

import { fail, migrationPolicyRules, pass } from '../attest/platform-verdict.js';

export type GuestRole = 'source' | 'target' | 'guest';

const hash = (alg: string, b: Uint8Array | string): string => createHash(alg).update(b).digest('hex');

/** The SNP product line of a policy's product line (one spelling: a line that runs no SNP is none). */
const generationOf = (line: ProductLine): SnpGeneration | undefined =>
  SNP_GENERATIONS.find((g) => g === line);

/** The SNP roots an owner policy trusts: AMD's ARKs of its product lines and the lab roots it names. */
export function snpTrustedArks(policy: OwnerPolicy): SnpTrustedArks {
  const arks = new Map<string, SnpGeneration>();
  for (const line of policy.trustedRoots.amd) {
    const g = generationOf(line);
    if (g) arks.set(AMD_SNP_CA_SHA256[g].ark, g);
  }
  for (const lab of policy.trustedRoots.lab) {
    const g = generationOf(lab.generation);
    if (g && lab.arkX509Sha256) arks.set(lab.arkX509Sha256, g);
  }
  return arks;
}

/** What the release decision keeps of one guest's judged evidence (digests and facts, nothing secret). */
export interface JudgedGuest {
  readonly role: GuestRole;
  readonly vmId: string;
  readonly rules: RuleResult[];
  /** How the guest proved itself (absent when it did not get that far). */
  readonly platform?: 'sev-snp' | 'sev' | 'sev-es';
  readonly report?: SnpAttestationReport;
  readonly publicKey?: Buffer;
  /** The underlay endpoint the guest reported with its evidence (not attested: routing only). */
  readonly overlayEndpoint?: string;
  readonly digests: {
    nonceSha256?: string;
    reportSha384?: string;
    publicKeySha256?: string;
    measurement?: string;
    platform?: 'sev-snp' | 'sev' | 'sev-es';
    launchDigest?: string;
    launchSessionId?: string;
    macSha384?: string;
    vcekSource?: 'guest' | 'cache';
  };
}

/**
 * One guest's evidence under the owner policy, pure (the nonce was checked and spent by the caller):
 * the report verifies up to a root the policy trusts (chain, VCEK signature, report ↔ VCEK binding),
 * its REPORT_DATA binds the guest's public key to the nonce and migration asked for, its MEASUREMENT
 * is one the policy accepts, its REPORTED_TCB meets the policy's floor and its guest policy bits are
 * allowed. Rules are named `<role>:<rule>`.
 */
export function judgeGuestEvidence(
  role: GuestRole,
  vmId: string,
  evidence: SnpEvidence,
  asked: { nonce: string; migrationId: string },
  policy: OwnerPolicy,
  now: Date = new Date(),
): JudgedGuest {
  const r = (name: string) => `${role}:${name}`;
  const rules: RuleResult[] = [];
  const report = Buffer.from(evidence.report, 'base64');
  const publicKey = Buffer.from(evidence.publicKey, 'base64');
  const digests: JudgedGuest['digests'] = {
    nonceSha256: hash('sha256', Buffer.from(asked.nonce, 'hex')),
    reportSha384: hash('sha384', report),
    publicKeySha256: hash('sha256', publicKey),
    platform: 'sev-snp',
  };
  const out = (extra: Partial<JudgedGuest> = {}): JudgedGuest => ({
    role,
    vmId,
    rules,
    digests,
    platform: 'sev-snp',
    ...extra,
  });
  if (evidence.vmId !== vmId) {
    rules.push(fail(r('evidence-from-guest'), 'wrong-guest', `guest ${evidence.vmId} answered for ${vmId}`));
    return out();
  }
  rules.push(pass(r('evidence-from-guest')));
  let certs: { ark: X509Certificate; ask: X509Certificate; vek: X509Certificate };
  try {
    const c = evidence.vcekChain;
    const x = (b: string) => new X509Certificate(Buffer.from(b, 'base64'));
    certs = { ark: x(c.ark), ask: x(c.ask), vek: x(c.vcek) };
  } catch (err) {
    rules.push(
      fail(r('report-verifies'), 'chain-decode', `the VCEK chain does not decode: ${(err as Error).message}`),
    );
    return out();
  }
  const v = verifySnpEvidence(report, certs, {
    trustedArks: snpTrustedArks(policy),
    now,
    allowedSigningKeys: ['VCEK', 'VLEK'],
    policy: { allowDebug: policy.snp?.allowDebug ?? false, allowSmt: policy.snp?.allowSmt ?? true },
  });
  const essential = (['chain', 'report', 'signature', 'binding', 'signingKey'] as const).find(
    (c) => v.checks[c].status !== 'passed',
  );
  if (essential || !v.report) {
    const check = essential ? v.checks[essential] : undefined;
    const error = check?.status === 'failed' ? check.error : undefined;
    const reason =
      error && 'reason' in error && typeof error.reason === 'string' ? error.reason : (essential ?? 'report');
    rules.push(
      fail(
        r('report-verifies'),
        `${essential ?? 'report'}:${reason}`,
        error?.message ?? 'the report was not verified',
      ),
    );
    return out();
  }
  const parsed = v.report;
  digests.measurement = Buffer.from(parsed.measurement).toString('hex');
  rules.push(pass(r('report-verifies'), `${v.generation ?? ''} ${v.vek?.kind ?? ''}`.trim()));
  const expected = guestEvidenceReportData(publicKey, Buffer.from(asked.nonce, 'hex'), asked.migrationId);
  rules.push(
    Buffer.from(parsed.reportData).equals(expected)
      ? pass(r('report-binds-key'))
      : fail(
          r('report-binds-key'),
          'report-data-mismatch',
          'REPORT_DATA does not bind this public key to the nonce and migration asked for',
        ),
  );
  const accepted = policy.snp?.launchDigests ?? [];
  rules.push(
    accepted.includes(digests.measurement)
      ? pass(r('measurement-accepted'))
      : fail(
          r('measurement-accepted'),
          'measurement-not-in-policy',
          `MEASUREMENT ${digests.measurement.slice(0, 16)}… is not accepted by policy ${policy.workloadClass}`,
        ),
  );
  const floor = v.generation ? policy.snp?.minTcb[v.generation] : undefined;
  if (floor) {
    const short = tcbShortfall(parsed.reportedTcb, {
      layout: parsed.reportedTcb.layout,
      bootLoader: floor.bootloader,
      tee: floor.tee,
      snp: floor.snp,
      microcode: floor.microcode,
    });
    rules.push(
      short.length === 0
        ? pass(r('tcb-minimum'), formatTcb(parsed.reportedTcb))
        : fail(
            r('tcb-minimum'),
            'tcb-too-low',
            short.map((d) => `${d.field} ${d.actual} < ${d.expected}`).join(', '),
          ),
    );
  } else {
    rules.push(pass(r('tcb-minimum'), 'no floor for this product line'));
  }
  const violations = policyViolations(parsed.policy, {
    allowDebug: policy.snp?.allowDebug ?? false,
    allowSmt: policy.snp?.allowSmt ?? true,
  });
  rules.push(
    violations.length === 0
      ? pass(r('guest-policy'))
      : fail(r('guest-policy'), 'guest-policy-violation', violations.join('; ')),
  );
  return out({ report: parsed, publicKey });
}

/** The attested launch an SEV/SEV-ES guest's identity secret came from (the broker's own record). */
export interface LaunchRecord {
  readonly id: string;
  readonly workloadClass: string;
  readonly state: string;
  /** The SEV guest policy the launch ran with. */
  readonly policy: number;
  readonly launchDigest: string | null;
  readonly identitySecret: Buffer | null;
}

/** SEV guest policy bit ES: the launch was an SEV-ES guest. */
const SEV_POLICY_ES = 0x4;

/**
 * One SEV or SEV-ES guest's evidence under the owner policy, pure (the nonce was checked and spent by
 * the caller): the guest had an attested launch whose secret was released (not revoked since), the
 * MAC verifies under the identity secret that launch injected (so the evidence comes from the guest
 * launched with that measurement, and binds its key, the nonce and the migration), the launch
 * digest is one the policy of this workload class accepts now, and the guest is of the kind the
 * launch made (SEV vs SEV-ES). Rules are named `<role>:<rule>`.
 */
export function judgeSevEvidence(
  role: GuestRole,
  vmId: string,
  evidence: SevEvidence,
  asked: { nonce: string; migrationId: string },
  launch: LaunchRecord | undefined,
  policy: OwnerPolicy,
): JudgedGuest {
  const r = (name: string) => `${role}:${name}`;
  const rules: RuleResult[] = [];
  const publicKey = Buffer.from(evidence.publicKey, 'base64');
  const digests: JudgedGuest['digests'] = {
    nonceSha256: hash('sha256', Buffer.from(asked.nonce, 'hex')),
    publicKeySha256: hash('sha256', publicKey),
    platform: evidence.platform,
  };
  const out = (extra: Partial<JudgedGuest> = {}): JudgedGuest => ({
    role,
    vmId,
    rules,
    digests,
    platform: evidence.platform,
    ...extra,
  });
  if (evidence.vmId !== vmId) {
    rules.push(fail(r('evidence-from-guest'), 'wrong-guest', `guest ${evidence.vmId} answered for ${vmId}`));
    return out();
  }
  rules.push(pass(r('evidence-from-guest')));
  if (!launch || launch.state === 'revoked' || !launch.identitySecret || !launch.launchDigest) {
    const reason = !launch
      ? 'no-attested-launch'
      : launch.state === 'revoked'
        ? 'launch-revoked'
        : 'no-secret';
    rules.push(
      fail(
        r('launch-attested'),
        reason,
        `guest ${vmId} has no live attested launch whose identity secret the broker released`,
      ),
    );
    return out();
  }
  digests.launchDigest = launch.launchDigest;
  digests.launchSessionId = launch.id;
  rules.push(pass(r('launch-attested'), launch.id));
  const expected = guestEvidenceMac(
    launch.identitySecret,
    publicKey,
    Buffer.from(asked.nonce, 'hex'),
    asked.migrationId,
  );
  const given = Buffer.from(evidence.mac, 'hex');
  digests.macSha384 = hash('sha384', given);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    rules.push(
      fail(
        r('mac-verifies'),
        'mac-mismatch',
        'the MAC is not over this key, nonce and migration under the identity secret of the launch',
      ),
    );
    return out();
  }
  rules.push(pass(r('mac-verifies')));
  const accepted = policy.sev.launchDigests;
  rules.push(
    launch.workloadClass === policy.workloadClass && accepted.includes(launch.launchDigest)
      ? pass(r('measurement-accepted'), launch.launchDigest)
      : fail(
          r('measurement-accepted'),
          launch.workloadClass === policy.workloadClass
            ? 'measurement-not-in-policy'
            : 'other-workload-class',
          `launch ${launch.id} (class ${launch.workloadClass}, digest ${launch.launchDigest.slice(0, 16)}…) is not accepted by policy ${policy.workloadClass}`,
        ),
  );
  const launchedAs = (launch.policy & SEV_POLICY_ES) !== 0 ? 'sev-es' : 'sev';
  rules.push(
    launchedAs === evidence.platform
      ? pass(r('guest-policy'), `${launchedAs} policy 0x${launch.policy.toString(16)}`)
      : fail(
          r('guest-policy'),
          'platform-mismatch',
          `the guest claims ${evidence.platform}, its launch was ${launchedAs}`,
        ),
  );
  return out({ publicKey });
}

/**
 * The rules across both guests and the policy: migration allowed at all, to the target host, the
 * owner's guest policy without NOSEND, two distinct guests, and no TCB rollback (the target's
 * REPORTED_TCB at least the source's, componentwise, on the same product line).
 */
export function judgeAcross(
  source: JudgedGuest,
  target: JudgedGuest,
  targetHost: string,
  policy: OwnerPolicy,
): RuleResult[] {
  const rules = migrationPolicyRules(targetHost, policy);
  const distinct =
    source.vmId !== target.vmId &&
    !(source.publicKey && target.publicKey && source.publicKey.equals(target.publicKey));
  rules.push(
    distinct
      ? pass('distinct-guests')
      : fail(
          'distinct-guests',
          'same-guest',
          'source and target are the same guest or share an identity key',
        ),
  );
  if (source.platform && target.platform && source.platform !== target.platform) {
    rules.push(
      fail(
        'target-tcb-not-lower',
        'other-platform',
        `source ${source.platform} and target ${target.platform} guests are not comparable`,
      ),
    );
    return rules;
  }
  if (source.platform !== 'sev-snp' && source.publicKey && target.publicKey) {
    // SEV/SEV-ES guests carry no reported TCB: their platforms were judged at the attested launch.
    rules.push(pass('target-tcb-not-lower', 'no reported TCB (SEV): platforms judged at launch'));
    return rules;
  }
  const [s, t] = [source.report, target.report];
  if (!s || !t) return rules;
  if (s.generation !== t.generation || s.reportedTcb.layout !== t.reportedTcb.layout) {
    rules.push(
      fail(
        'target-tcb-not-lower',
        'other-product-line',
        `source ${s.generation ?? '?'} and target ${t.generation ?? '?'} TCBs are not comparable`,
      ),
    );
    return rules;
  }
  const short = tcbShortfall(t.reportedTcb, s.reportedTcb);
  rules.push(
    short.length === 0
      ? pass('target-tcb-not-lower', `${formatTcb(t.reportedTcb)} ≥ ${formatTcb(s.reportedTcb)}`)
      : fail(
          'target-tcb-not-lower',
          'tcb-rollback',
          `target TCB below the source's: ${short.map((d) => `${d.field} ${d.actual} < ${d.expected}`).join(', ')}`,
        ),
  );
  return rules;
}
