import { createHash } from 'node:crypto';
import { type OwnerPolicy, type PlatformReply, type RuleResult } from '@ccm/contracts';
import {
  AMD_ROOT_PINS,
  decodeQemuSevMigrationParameters,
  encodeAmdCertificateBody,
  encodeSevCertificate,
  encodeSevPlatformCertChain,
  isSevError,
  SEV_GENERATIONS,
  SevCertOffset,
  SevPolicyBit,
  verifySevChain,
  type SevCertificate,
  type SevCertificateChain,
  type SevGeneration,
} from '@ccm/sev';

/** A CEK the guest owner put in the certificate cache (as AMD's KDS serves it: signed by the ASK). */
export interface CachedCek {
  readonly kdsUrl: string;
  readonly cek: SevCertificate;
}

/** The usage, algorithm and public key of a SEV certificate: what a CEK is, whatever signs it. */
const keyOf = (c: SevCertificate): Buffer =>
  encodeSevCertificate(c).subarray(SevCertOffset.PUB_KEY_USAGE, SevCertOffset.SIG1_USAGE);

/** What a platform verdict found, before it is given an id and recorded. */
export interface PlatformJudgement {
  readonly ok: boolean;
  readonly platform?: 'sev' | 'sev-es';
  readonly generation?: SevGeneration;
  readonly root?: string;
  readonly pdhSha256?: string;
  readonly rules: RuleResult[];
  readonly failure?: RuleResult;
}

export const pass = (rule: string, detail?: string): RuleResult => ({
  rule,
  ok: true,
  ...(detail ? { detail } : {}),
});
export const fail = (rule: string, reason: string, detail: string): RuleResult => ({
  rule,
  ok: false,
  reason,
  detail,
});
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Which root the chain's ARK is, as far as this policy is concerned. */
function judgeRoot(
  chain: SevCertificateChain,
  policy: OwnerPolicy,
): { result: RuleResult; root?: string; lab?: { generation: SevGeneration } } {
  const body = sha256(encodeAmdCertificateBody(chain.ark));
  const amd = SEV_GENERATIONS.find((g) => AMD_ROOT_PINS[g].arkBodySha256Hex === body);
  if (amd) {
    if (!policy.trustedRoots.amd.includes(amd)) {
      return {
        result: fail('root-trusted', 'root-not-in-policy', `AMD ${amd} ARK is not trusted by this policy`),
      };
    }
    return { result: pass('root-trusted', `AMD ${amd}`), root: 'amd' };
  }
  const lab = policy.trustedRoots.lab.find((r) => r.arkBodySha256 === body);
  if (lab) return { result: pass('root-trusted', `lab ${lab.name}`), root: `lab:${lab.name}`, lab };
  const why =
    policy.environment === 'production'
      ? 'a production policy trusts AMD roots only'
      : 'the policy names no lab root with this key';
  return { result: fail('root-trusted', 'untrusted-root', `ARK ${body.slice(0, 16)}… is not AMD's: ${why}`) };
}

/**
 * What the owner's policy says of moving its workloads to `hostId` at all: `migration-allowed`,
 * `target-host-allowed` and `guest-policy-allows-send` (NOSEND forbids migration).
 */
export function migrationPolicyRules(hostId: string, policy: OwnerPolicy): RuleResult[] {
  return [
    policy.migration.allowed
      ? pass('migration-allowed')
      : fail('migration-allowed', 'migration-forbidden', `policy ${policy.workloadClass} forbids migration`),
    policy.migration.targetHosts.includes(hostId)
      ? pass('target-host-allowed')
      : fail('target-host-allowed', 'host-not-allowed', `host ${hostId} is not a target this policy allows`),
    policy.sev.guestPolicy & SevPolicyBit.NOSEND
      ? fail(
          'guest-policy-allows-send',
          'nosend',
          'the guest policy has NOSEND: its guests may never be sent',
        )
      : pass('guest-policy-allows-send'),
  ];
}

/**
 * The owner's decision on a target platform for one workload: may its workloads migrate there, and is
 * the SEV chain the host exported genuine under the roots this policy trusts? Every rule is evaluated
 * and reported; the verdict is granted only when all pass. Pure: the caller fetched the chain.
 *
 * Rules: `migration-allowed`, `target-host-allowed`, `guest-policy-allows-send` (NOSEND forbids
 * migration), then those of {@link judgeChain}.
 */
export function judgePlatform(
  hostId: string,
  platform: PlatformReply,
  policy: OwnerPolicy,
  cachedCeks: readonly CachedCek[] = [],
): PlatformJudgement {
  const rules = migrationPolicyRules(hostId, policy);
  // The verdict is recorded and published: it carries digests, not the decoded chain.
  const { chain: _chain, ...judgement } = judgeChain(hostId, platform, policy, rules, cachedCeks);
  return judgement;
}

/**
 * The host's SEV chain as the broker verified it (QEMU's `sev-plat-cert` etc., base64): the host's
 * own, with its CEK replaced by the owner's cached one when {@link judgeChain} used that.
 */
export function verifiedChain(
  platform: PlatformReply,
  judged: { chain?: SevCertificateChain },
): NonNullable<PlatformReply['sev']>['chain'] {
  const chain = platform.sev!.chain;
  if (!judged.chain) return chain;
  return { ...chain, platCert: encodeSevPlatformCertChain(judged.chain).toString('base64') };
}

/**
 * Whether a host's SEV chain is genuine under the policy's roots (for a launch there, or as part of
 * {@link judgePlatform}). Rules: `platform-has-sev`, `chain-decodes`, `cek-source`, `root-trusted`,
 * `chain:<link>` for each signature of ARK→ASK→CEK→PEK(←OCA)→PDH, and `firmware-minimum` (the PEK's
 * signed API version). The decoded chain (with the CEK verified) is returned with a granted verdict.
 *
 * The CEK: a host's firmware may export its CEK unsigned (Rome's PDH_CERT_EXPORT does; the ASK-signed
 * one is on AMD's KDS), so when the owner's cache holds a CEK with the same public key, that one is
 * verified in its place (`cek-source` says `cache …`); otherwise the host's CEK is (`host`).
 */
export function judgeChain(
  hostId: string,
  platform: PlatformReply,
  policy: OwnerPolicy,
  rules: RuleResult[] = [],
  cachedCeks: readonly CachedCek[] = [],
): PlatformJudgement & { chain?: SevCertificateChain } {
  const es = (policy.sev.guestPolicy & SevPolicyBit.ES) !== 0;
  const base = { platform: es ? ('sev-es' as const) : ('sev' as const) };
  if (platform.hostId !== hostId) {
    rules.push(fail('platform-has-sev', 'wrong-host', `host ${platform.hostId} answered for ${hostId}`));
    return finish(rules, base);
  }
  if (!platform.sev) {
    rules.push(fail('platform-has-sev', 'no-sev', `host ${hostId} reports no SEV`));
    return finish(rules, base);
  }
  rules.push(pass('platform-has-sev', `${platform.sev.mode} firmware`));
  let chain: SevCertificateChain;
  try {
    const c = platform.sev.chain;
    chain = decodeQemuSevMigrationParameters({
      'sev-pdh': c.pdh,
      'sev-plat-cert': c.platCert,
      'sev-amd-cert': c.amdCert,
    });
    rules.push(pass('chain-decodes'));
  } catch (err) {
    if (!isSevError(err)) throw err;
    rules.push(fail('chain-decodes', err.code, err.message));
    return finish(rules, base);
  }
  const hostKey = keyOf(chain.cek);
  const cached = cachedCeks.find((c) => keyOf(c.cek).equals(hostKey));
  if (cached) chain = { ...chain, cek: cached.cek };
  rules.push(pass('cek-source', cached ? `cache ${cached.kdsUrl}` : 'host'));
  const root = judgeRoot(chain, policy);
  rules.push(root.result);
  const verdict = verifySevChain(
    chain,
    root.lab ? { extraRoots: [{ ark: chain.ark, generation: root.lab.generation }] } : {},
  );
  for (const l of verdict.links) {
    rules.push(l.ok ? pass(`chain:${l.link}`) : fail(`chain:${l.link}`, l.reason, l.message));
  }
  const min = policy.sev.minFirmware;
  const { apiMajor, apiMinor } = chain.pek;
  rules.push(
    apiMajor > min.apiMajor || (apiMajor === min.apiMajor && apiMinor >= min.apiMinor)
      ? pass('firmware-minimum', `${apiMajor}.${apiMinor}`)
      : fail(
          'firmware-minimum',
          'tcb-too-low',
          `firmware ${apiMajor}.${apiMinor} < ${min.apiMajor}.${min.apiMinor}`,
        ),
  );
  const judged = finish(rules, {
    ...base,
    generation: verdict.generation,
    root: root.root,
    pdhSha256: sha256(encodeSevCertificate(chain.pdh)),
  });
  return judged.ok ? { ...judged, chain } : judged;
}

function finish(
  rules: RuleResult[],
  facts: Omit<PlatformJudgement, 'ok' | 'rules' | 'failure'>,
): PlatformJudgement {
  const failure = rules.find((r) => !r.ok);
  return { ok: failure === undefined, ...facts, rules, ...(failure ? { failure } : {}) };
}
