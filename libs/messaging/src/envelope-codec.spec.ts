import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isCcmError, type Envelope } from '@ccm/contracts';
import { type Identity, type TrustStore } from '@ccm/keys';
import { z } from 'zod';
import { encodeEnvelope, openEnvelope, sealEnvelope, type EnvelopeExpectation } from './envelope-codec.js';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const me = { name: 'operator', keyId: 'k1', signingKey: privateKey } as unknown as Identity;
const trust = {
  lookup: (id: string) => (id === 'k1' ? { signer: 'operator', key: publicKey } : undefined),
} as unknown as TrustStore;
const S = 'ccm.cmd.key-broker.ping';
const Data = z.object({ n: z.number() });

function codeOf(env: Envelope, expect: EnvelopeExpectation): string {
  try {
    openEnvelope(encodeEnvelope(env), trust, Data, expect);
    return 'ok';
  } catch (err) {
    if (isCcmError(err)) return err.code;
    throw err;
  }
}

describe('openEnvelope checks what the envelope was signed for', () => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  const env = (over: { natssubject?: string; type?: string; time?: Date } = {}) =>
    sealEnvelope(me, { natssubject: S, type: S, data: { n: 1 }, time: new Date(now), ...over });

  it.each([
    ['the subject and type it was signed for, on time', env(), { subject: S, types: [S], at: now }, 'ok'],
    ['another subject', env(), { subject: 'ccm.cmd.vm-lifecycle.ping', at: now }, 'MISADDRESSED'],
    ['another type', env({ type: 'ccm.req.migrate' }), { subject: S, types: [S] }, 'MISADDRESSED'],
    ['120 s late, at the skew', env({ time: new Date(now - 120_000) }), { subject: S, at: now }, 'ok'],
    ['121 s late', env({ time: new Date(now - 121_000) }), { subject: S, at: now }, 'STALE'],
    ['121 s early', env({ time: new Date(now + 121_000) }), { subject: S, at: now }, 'STALE'],
    [
      'a day late where age is unbounded',
      env({ time: new Date(now - 86_400_000) }),
      { subject: S, at: now, maxAgeMs: Infinity },
      'ok',
    ],
    [
      'a day early where age is unbounded',
      env({ time: new Date(now + 86_400_000) }),
      { subject: S, at: now, maxAgeMs: Infinity },
      'STALE',
    ],
    ['no time check asked', env({ time: new Date('2000-01-01Z') }), { subject: S }, 'ok'],
  ] as const)('%s: %s', (_what, e, expect_, code) => {
    expect(codeOf(e, expect_ as EnvelopeExpectation)).toBe(code);
  });

  it('refuses a subject swapped after signing as a bad signature', () => {
    expect(
      codeOf(
        { ...env(), natssubject: 'ccm.cmd.vm-lifecycle.ping' },
        { subject: 'ccm.cmd.vm-lifecycle.ping' },
      ),
    ).toBe('SIGNATURE_INVALID');
  });

  it('refuses a version 2 envelope with its subject stripped (it cannot pass as version 1)', () => {
    const { natssubject: _n, ...stripped } = env();
    expect(codeOf(stripped as Envelope, { subject: S, acceptV1: true })).toBe('SIGNATURE_INVALID');
    expect(codeOf(stripped as Envelope, { subject: S })).toBe('MISADDRESSED');
  });
});
