import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LAUNCH_SECRET_GUIDS } from '@ccm/contracts';
import { createAccount } from '@nats-io/nkeys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeys, loadIdentity, type Identity } from './identity.js';
import { guestAgentIdentityFromSecrets, guestAgentSecretEntries, type SecretEntry } from './launch-secret.js';

const SIGN = LAUNCH_SECRET_GUIDS.guestAgentSigningKey;
const SEED = LAUNCH_SECRET_GUIDS.guestAgentNatsSeed;

describe("the guest-agent's identity in a launch secret", () => {
  let dir: string;
  let identity: Identity;
  let entries: SecretEntry[];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ccm-keys-secret-'));
    await generateKeys(dir, { signers: ['guest-agent'] });
    identity = await loadIdentity(dir, 'guest-agent');
    entries = guestAgentSecretEntries(identity);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads back the same NATS user and signing key from its two entries', () => {
    expect(entries.map((e) => [e.guid, e.data.length])).toEqual([
      [SIGN, 48],
      [SEED, 58],
    ]);
    const back = guestAgentIdentityFromSecrets(
      [{ guid: LAUNCH_SECRET_GUIDS.identity, data: Buffer.alloc(32, 1) }, ...entries],
      't',
    );
    expect(back).toMatchObject({
      name: 'guest-agent',
      keyId: identity.keyId,
      natsPublicKey: identity.natsPublicKey,
    });
  });

  it('is absent from a table that carries neither entry', () => {
    expect(
      guestAgentIdentityFromSecrets([{ guid: LAUNCH_SECRET_GUIDS.identity, data: Buffer.alloc(32) }], 't'),
    ).toBeUndefined();
  });

  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
    format: 'der',
    type: 'pkcs8',
  });
  const cases: Array<[string, () => SecretEntry[], string, string]> = [
    ['the signing key alone', () => [entries[0]], SEED, 'missing beside the signing key'],
    ['the seed alone', () => [entries[1]], SIGN, 'missing beside the NATS seed'],
    [
      'a truncated signing key',
      () => [{ guid: SIGN, data: entries[0].data.subarray(0, 40) }, entries[1]],
      SIGN,
      'not a PKCS#8 private key',
    ],
    ['an RSA signing key', () => [{ guid: SIGN, data: rsa }, entries[1]], SIGN, 'a rsa key, not Ed25519'],
    [
      'a seed that is not a seed',
      () => [entries[0], { guid: SEED, data: Buffer.from('SUnotaseed') }],
      SEED,
      'not a NATS NKEY seed',
    ],
    [
      'an account seed',
      () => [entries[0], { guid: SEED, data: createAccount().getSeed() }],
      SEED,
      'not a NATS user seed',
    ],
    ['two signing keys', () => [entries[0], ...entries], SIGN, '2 entries with this GUID'],
  ];
  it.each(cases)('refuses %s: SECRET_TABLE_INVALID naming the entry', (_, make, guid, reason) => {
    let err: unknown;
    try {
      guestAgentIdentityFromSecrets(make(), '/run/ccm/sev/secret-table');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({
      code: 'SECRET_TABLE_INVALID',
      retryable: false,
      details: { source: '/run/ccm/sev/secret-table', guid, reason },
    });
    expect((err as Error).message).toBe(`/run/ccm/sev/secret-table: secret table entry ${guid}: ${reason}`);
  });
});
