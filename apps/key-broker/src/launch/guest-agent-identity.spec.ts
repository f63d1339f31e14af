import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@ccm/config';
import { generateKeys, loadIdentity, loadTrustStore } from '@ccm/keys';
import { type MessagingOptions } from '@ccm/messaging';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyBrokerConfigSchema } from '../config.js';
import { guestAgentIdentityProvider } from './guest-agent-identity.js';

describe("the key-broker's CCM_GUEST_AGENT_KEYS_DIR", () => {
  let work: string;
  let messaging: MessagingOptions;
  /** A guest-owner dir holding the keys of `from` from the stack's keys dir, under the guest-agent's names. */
  const ownerDir = async (name: string, from: string) => {
    const dir = join(work, name);
    await mkdir(dir, { recursive: true });
    await copyFile(join(work, 'keys', `${from}.nk`), join(dir, 'guest-agent.nk'));
    await copyFile(join(work, 'keys', `${from}.sign.pem`), join(dir, 'guest-agent.sign.pem'));
    return dir;
  };
  const load = (dir?: string) =>
    guestAgentIdentityProvider.useFactory(
      keyBrokerConfigSchema.parse({
        CCM_KEYS_DIR: join(work, 'keys'),
        CCM_GUEST_AGENT_KEYS_DIR: dir,
      }),
      messaging,
    );
  const problemOf = async (dir: string) => {
    const err = await load(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.join('\n');
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'ccm-kb-ga-keys-'));
    await generateKeys(join(work, 'keys'), { signers: ['guest-agent', 'host-agent'] });
    messaging = { trust: await loadTrustStore(join(work, 'keys')) } as MessagingOptions;
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it("loads the guest-agent's identity the trust store names guest-agent", async () => {
    const want = await loadIdentity(join(work, 'keys'), 'guest-agent');
    expect(await load(await ownerDir('good', 'guest-agent'))).toMatchObject({
      keyId: want.keyId,
      natsPublicKey: want.natsPublicKey,
    });
  });

  it('is nothing when unset (launch secrets carry the identity secret and disk key only)', async () => {
    expect(await load(undefined)).toBeUndefined();
  });

  it('stops the broker on a directory without the identity', async () => {
    expect(await problemOf(join(work, 'missing'))).toMatch(
      /^CCM_GUEST_AGENT_KEYS_DIR: cannot load the keys of guest-agent/,
    );
  });

  it("stops the broker on another identity's keys: a guest would be refused by every service", async () => {
    expect(await problemOf(await ownerDir('host', 'host-agent'))).toMatch(
      /trusted as host-agent, not as guest-agent$/,
    );
    await generateKeys(join(work, 'other'), { signers: ['guest-agent'] });
    expect(await problemOf(join(work, 'other'))).toMatch(/not in the trust store, not as guest-agent$/);
  });

  it('takes an absolute path only', () => {
    expect(() =>
      keyBrokerConfigSchema.parse({ CCM_KEYS_DIR: '/k', CCM_GUEST_AGENT_KEYS_DIR: 'keys' }),
    ).toThrow(/an absolute path/);
  });
});
