import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeys, loadIdentity, loadTrustStore } from './identity.js';

describe('keys dir', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ccm-keys-spec-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('makes one NKEY and one signing key per identity, secret files 0600, and a trust store of all', async () => {
    await generateKeys(dir, { signers: ['key-broker', 'host-agent', 'operator'], hostIds: ['h1'] });
    expect((await stat(join(dir, 'key-broker.nk'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'key-broker.sign.pem'))).mode & 0o777).toBe(0o600);
    const trust = await loadTrustStore(dir);
    expect(trust.size).toBe(4);
    const pinned = await loadIdentity(dir, 'host-agent', 'h1');
    expect(trust.lookup(pinned.keyId)).toMatchObject({ signer: 'host-agent', scope: 'h1' });
    const unpinned = await loadIdentity(dir, 'host-agent', 'no-such-host');
    expect(unpinned.keyId).not.toBe(pinned.keyId);
    expect(trust.lookup(unpinned.keyId)?.scope).toBeUndefined();
  });

  it('keeps existing keys when run again, so a deployment keeps its identities', async () => {
    const before = await loadIdentity(dir, 'key-broker');
    await generateKeys(dir, { signers: ['key-broker', 'host-agent', 'operator'], hostIds: ['h1', 'h2'] });
    const after = await loadIdentity(dir, 'key-broker');
    expect(after.keyId).toBe(before.keyId);
    expect(after.natsPublicKey).toBe(before.natsPublicKey);
    expect(await readFile(join(dir, 'nats-auth.conf'), 'utf8')).toContain('"ccm.cmd.host.h2.>"');
  });

  it('loading a missing identity is a typed, non-retryable error', async () => {
    await expect(loadIdentity(dir, 'saga-coordinator')).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      retryable: false,
    });
  });
});
