import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { guestEvidenceMac, type SevEvidence } from '@ccm/contracts';
import { policy } from '../__fixtures__/platforms.js';
import { judgeAcross, judgeSevEvidence, type LaunchRecord } from './judge-evidence.js';

const DIGEST = 'ab'.repeat(32);
const owner = policy({
  sev: { minFirmware: { apiMajor: 0, apiMinor: 0 }, guestPolicy: 0x5, launchDigests: [DIGEST] },
});

/** An SEV-ES guest's honest evidence and the launch record it must match. */
function guest(vmId = 'vm-1') {
  const secret = randomBytes(32);
  const publicKey = randomBytes(32);
  const asked = { nonce: randomBytes(32).toString('hex'), migrationId: 'mig-1' };
  const launch: LaunchRecord = {
    id: `ls-${vmId}`,
    workloadClass: owner.workloadClass,
    state: 'secret-released',
    policy: 0x5,
    launchDigest: DIGEST,
    identitySecret: secret,
  };
  const evidence: SevEvidence = {
    vmId,
    ...asked,
    platform: 'sev-es',
    publicKey: publicKey.toString('base64'),
    mac: guestEvidenceMac(secret, publicKey, Buffer.from(asked.nonce, 'hex'), asked.migrationId).toString(
      'hex',
    ),
  };
  return { evidence, launch, asked, vmId };
}

const failed = (rules: Array<{ rule: string; ok: boolean; reason?: string }>) =>
  rules.filter((r) => !r.ok).map((r) => `${r.rule}:${r.reason ?? ''}`);

describe('judgeSevEvidence', () => {
  it('passes an honest SEV-ES guest with its launch digest and session in the digests', () => {
    const g = guest();
    const j = judgeSevEvidence('source', g.vmId, g.evidence, g.asked, g.launch, owner);
    expect(failed(j.rules)).toEqual([]);
    expect(j.rules.map((r) => r.rule)).toEqual([
      'source:evidence-from-guest',
      'source:launch-attested',
      'source:mac-verifies',
      'source:measurement-accepted',
      'source:guest-policy',
    ]);
    expect(j.digests).toMatchObject({ platform: 'sev-es', launchDigest: DIGEST, launchSessionId: 'ls-vm-1' });
    expect(j.publicKey).toHaveLength(32);
  });

  it.each<[string, (g: ReturnType<typeof guest>) => Parameters<typeof judgeSevEvidence>, string]>([
    [
      'evidence of another VM',
      (g) => ['source', 'vm-2', g.evidence, g.asked, g.launch, owner],
      'source:evidence-from-guest:wrong-guest',
    ],
    [
      'no attested launch',
      (g) => ['source', g.vmId, g.evidence, g.asked, undefined, owner],
      'source:launch-attested:no-attested-launch',
    ],
    [
      'a launch revoked by rotate',
      (g) => [
        'source',
        g.vmId,
        g.evidence,
        g.asked,
        { ...g.launch, state: 'revoked', identitySecret: null },
        owner,
      ],
      'source:launch-attested:launch-revoked',
    ],
    [
      'a MAC under another secret',
      (g) => ['source', g.vmId, g.evidence, g.asked, { ...g.launch, identitySecret: randomBytes(32) }, owner],
      'source:mac-verifies:mac-mismatch',
    ],
    [
      'a MAC over another nonce',
      (g) => [
        'source',
        g.vmId,
        g.evidence,
        { ...g.asked, nonce: randomBytes(32).toString('hex') },
        g.launch,
        owner,
      ],
      'source:mac-verifies:mac-mismatch',
    ],
    [
      'a MAC binding another public key',
      (g) => [
        'source',
        g.vmId,
        { ...g.evidence, publicKey: randomBytes(32).toString('base64') },
        g.asked,
        g.launch,
        owner,
      ],
      'source:mac-verifies:mac-mismatch',
    ],
    [
      'a launch digest the policy does not accept',
      (g) => ['source', g.vmId, g.evidence, g.asked, { ...g.launch, launchDigest: 'cd'.repeat(32) }, owner],
      'source:measurement-accepted:measurement-not-in-policy',
    ],
    [
      'a launch of another workload class',
      (g) => ['source', g.vmId, g.evidence, g.asked, { ...g.launch, workloadClass: 'other' }, owner],
      'source:measurement-accepted:other-workload-class',
    ],
    [
      'SEV-ES claimed for an SEV launch',
      (g) => ['source', g.vmId, g.evidence, g.asked, { ...g.launch, policy: 0x1 }, owner],
      'source:guest-policy:platform-mismatch',
    ],
  ])('refuses %s', (_name, args, rule) => {
    const j = judgeSevEvidence(...args(guest()));
    expect(failed(j.rules)).toEqual([rule]);
  });

  it('across two SEV guests: no TCB to compare; an SEV and an SNP guest are refused', () => {
    const [a, b] = [guest('vm-a'), guest('vm-b')];
    const s = judgeSevEvidence('source', a.vmId, a.evidence, a.asked, a.launch, owner);
    const t = judgeSevEvidence('target', b.vmId, b.evidence, b.asked, b.launch, owner);
    const rules = judgeAcross(s, t, 'host-b', owner);
    expect(failed(rules)).toEqual([]);
    expect(rules.find((r) => r.rule === 'target-tcb-not-lower')?.ok).toBe(true);
    const mixed = judgeAcross(s, { ...t, platform: 'sev-snp' }, 'host-b', owner);
    expect(failed(mixed)).toEqual(['target-tcb-not-lower:other-platform']);
  });
});
