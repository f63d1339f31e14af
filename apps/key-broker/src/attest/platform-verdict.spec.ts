import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PlatformReply } from '@ccm/contracts';
import {
  decodeSevCertificate,
  decodeSevPlatformCertChain,
  EMPTY_SEV_SIGNATURE_SLOT,
  encodeSevCertificate,
  kdsCekUrl,
  SevPolicyBit,
} from '@ccm/sev';
import { emulatedPlatform, labPin, policy, realPlatform, vector } from '../__fixtures__/platforms.js';
import { judgeChain, judgePlatform, verifiedChain, type CachedCek } from './platform-verdict.js';

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

  describe('the CEK from the owner’s certificate cache', () => {
    const CEK_AT = 2 * 2084;
    /** The real Rome reply with its CEK as Rome firmware exports it: same key, both signature slots empty. */
    const unsignedCek = (): PlatformReply => {
      const r = realPlatform('host-b', 'rome');
      const plat = Buffer.from(r.sev!.chain.platCert, 'base64');
      const cek = decodeSevCertificate(plat.subarray(CEK_AT));
      const bare = { ...cek, signatures: [EMPTY_SEV_SIGNATURE_SLOT, EMPTY_SEV_SIGNATURE_SLOT] as const };
      encodeSevCertificate(bare).copy(plat, CEK_AT);
      return { ...r, sev: { ...r.sev!, chain: { ...r.sev!.chain, platCert: plat.toString('base64') } } };
    };
    /** The owner's cache: the real KDS-served CEK of `generation` under a chip id of the test's. */
    const cached = (generation: 'naples' | 'rome'): CachedCek => ({
      kdsUrl: kdsCekUrl(Buffer.alloc(64, generation === 'rome' ? 0x0e : 0x0a)),
      cek: decodeSevCertificate(vector(`sev/platform/${generation}/cek.cert`)),
    });
    const cekSource = (v: { rules: Array<{ rule: string; detail?: string }> }) =>
      v.rules.find((r) => r.rule === 'cek-source')?.detail;

    it('a host exporting an unsigned CEK is refused at the CEK link without a cached CEK', () => {
      const v = judgePlatform('host-b', unsignedCek(), policy());
      expect(v.ok).toBe(false);
      expect(v.failure?.rule).toBe('chain:cek-by-ask');
      expect(cekSource(v)).toBe('host');
    });

    it('is granted with the owner’s cached (ASK-signed) CEK of the same key, which the released chain carries', () => {
      const reply = unsignedCek();
      const rome = cached('rome');
      const v = judgeChain('host-b', reply, policy(), [], [cached('naples'), rome]);
      expect(v.failure).toBeUndefined();
      expect(v).toMatchObject({ ok: true, generation: 'rome', root: 'amd' });
      expect(cekSource(v)).toBe(`cache ${rome.kdsUrl}`);
      const released = decodeSevPlatformCertChain(Buffer.from(verifiedChain(reply, v).platCert, 'base64'));
      expect(encodeSevCertificate(released.cek)).toEqual(vector('sev/platform/rome/cek.cert'));
    });

    it('another chip’s cached CEK does not stand in for the host’s (its key differs)', () => {
      const v = judgePlatform('host-b', unsignedCek(), policy(), [cached('naples')]);
      expect(v.ok).toBe(false);
      expect(v.failure?.rule).toBe('chain:cek-by-ask');
      expect(cekSource(v)).toBe('host');
    });

    it('a host’s signed CEK is cross-checked by the cached one: the cached copy is what is verified', () => {
      const v = judgePlatform('host-b', realPlatform('host-b', 'rome'), policy(), [cached('rome')]);
      expect(v.ok).toBe(true);
      expect(cekSource(v)).toMatch(/^cache https:\/\/kdsintf\.amd\.com\/cek\/id\//);
      // A cached CEK whose ASK signature was tampered with is refused, though the host's is genuine.
      const bad = cached('rome');
      const bytes = encodeSevCertificate(bad.cek);
      bytes[0x41c + 8] ^= 0x01;
      const tampered = { ...bad, cek: decodeSevCertificate(bytes) };
      const refused = judgePlatform('host-b', realPlatform('host-b', 'rome'), policy(), [tampered]);
      expect(refused.failure).toMatchObject({ rule: 'chain:cek-by-ask', ok: false });
    });
  });
});
