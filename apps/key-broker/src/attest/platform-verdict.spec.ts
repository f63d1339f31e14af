import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PlatformReply } from '@ccm/contracts';
import { SevPolicyBit } from '@ccm/sev';
import { emulatedPlatform, labPin, policy, realPlatform } from '../__fixtures__/platforms.js';
import { judgePlatform } from './platform-verdict.js';

/** A copy of the reply with one bit of a base64 chain field flipped at `offset`. */
function flipped(reply: PlatformReply, field: 'pdh' | 'platCert' | 'amdCert', offset: number): PlatformReply {
  const bytes = Buffer.from(reply.sev!.chain[field], 'base64');
  bytes[offset] ^= 0x01;
  return {
    ...reply,
    sev: { ...reply.sev!, chain: { ...reply.sev!.chain, [field]: bytes.toString('base64') } },
  };
}

describe('judging a platform under the owner policy', () => {
  let lab: Awaited<ReturnType<typeof emulatedPlatform>>;
  beforeAll(async () => {
    lab = await emulatedPlatform('host-b');
  }, 60_000);
  afterAll(() => lab?.cleanup());

  it.each(['naples', 'rome'] as const)('grants a real %s chain to AMD’s pinned root', (g) => {
    const v = judgePlatform('host-b', realPlatform('host-b', g), policy());
    expect(v.failure).toBeUndefined();
    expect(v).toMatchObject({ ok: true, generation: g, root: 'amd', platform: 'sev' });
    expect(v.pdhSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(v.rules.map((r) => r.rule)).toContain('chain:pdh-by-pek');
  });

  it('grants the software secure processor only under a lab policy that names its root', () => {
    const p = policy({
      environment: 'lab',
      trustedRoots: { amd: [], lab: [{ name: 'dev', generation: 'milan', arkBodySha256: labPin(lab.lab) }] },
    });
    const v = judgePlatform('host-b', lab.reply, p);
    expect(v.failure).toBeUndefined();
    expect(v).toMatchObject({ ok: true, root: 'lab:dev' });
  });

  // Each row breaks one thing and names the rule that must fail, with its reason.
  const cases: Array<[string, () => [PlatformReply, ReturnType<typeof policy>], string, string]> = [
    ['the lab root under a production policy', () => [lab.reply, policy()], 'root-trusted', 'untrusted-root'],
    [
      'a lab policy naming another lab root',
      () => [
        lab.reply,
        policy({
          environment: 'lab',
          trustedRoots: {
            amd: [],
            lab: [{ name: 'x', generation: 'milan', arkBodySha256: 'ab'.repeat(32) }],
          },
        }),
      ],
      'root-trusted',
      'untrusted-root',
    ],
    [
      'an AMD root the policy does not list',
      () => [realPlatform('host-b', 'rome'), policy({ trustedRoots: { amd: ['naples'], lab: [] } })],
      'root-trusted',
      'root-not-in-policy',
    ],
    [
      'a bit flipped in the PDH key',
      () => [flipped(realPlatform('host-b', 'rome'), 'pdh', 0x20), policy()],
      'chain:pdh-by-pek',
      'bad-signature',
    ],
    [
      'a bit flipped in the PEK signature by the CEK',
      () => [flipped(realPlatform('host-b', 'rome'), 'platCert', 0x634), policy()],
      'chain:pek-by-cek',
      'bad-signature',
    ],
    [
      'a bit flipped in the CEK (third cert of the platform chain)',
      () => [flipped(realPlatform('host-b', 'rome'), 'platCert', 2 * 2084 + 0x20), policy()],
      'chain:cek-by-ask',
      'bad-signature',
    ],
    [
      'a forged ARK reusing AMD’s key id',
      () => [flipped(realPlatform('host-b', 'rome'), 'amdCert', 1600 + 0x60), policy()],
      'root-trusted',
      'untrusted-root',
    ],
    [
      'a truncated chain',
      () => {
        const r = realPlatform('host-b', 'rome');
        return [
          { ...r, sev: { ...r.sev!, chain: { ...r.sev!.chain, pdh: r.sev!.chain.pdh.slice(0, 100) } } },
          policy(),
        ];
      },
      'chain-decodes',
      'TRUNCATED',
    ],
    [
      'NOSEND in the guest policy',
      () => [
        realPlatform('host-b', 'rome'),
        policy({
          sev: {
            minFirmware: { apiMajor: 0, apiMinor: 0 },
            guestPolicy: 0x1 | SevPolicyBit.NOSEND,
            launchDigests: [],
          },
        }),
      ],
      'guest-policy-allows-send',
      'nosend',
    ],
    [
      'migration forbidden',
      () => [
        realPlatform('host-b', 'rome'),
        policy({ migration: { allowed: false, targetHosts: ['host-b'] } }),
      ],
      'migration-allowed',
      'migration-forbidden',
    ],
    [
      'a target host the policy does not allow',
      () => [realPlatform('host-c', 'rome'), policy()],
      'target-host-allowed',
      'host-not-allowed',
    ],
    [
      'firmware below the minimum',
      () => [
        realPlatform('host-b', 'naples'),
        policy({ sev: { minFirmware: { apiMajor: 0, apiMinor: 17 }, guestPolicy: 1, launchDigests: [] } }),
      ],
      'firmware-minimum',
      'tcb-too-low',
    ],
    [
      'a host without SEV',
      () => [{ ...realPlatform('host-b', 'rome'), sev: undefined }, policy()],
      'platform-has-sev',
      'no-sev',
    ],
  ];

  it.each(cases)('refuses %s', (_name, make, rule, reason) => {
    const [reply, p] = make();
    const v = judgePlatform(reply.hostId === 'host-c' ? 'host-c' : 'host-b', reply, p);
    expect(v.ok).toBe(false);
    const failed = v.rules.find((r) => r.rule === rule);
    expect(failed, JSON.stringify(v.rules)).toMatchObject({ ok: false, reason });
  });
});
