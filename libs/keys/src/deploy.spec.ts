import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployKeys, identitiesIn } from './deploy.js';
import { generateKeys, loadIdentity, loadTrustStore } from './identity.js';

describe('keys split per deployed process', () => {
  let keys: string;
  let out: string;
  beforeAll(async () => {
    keys = await mkdtemp(join(tmpdir(), 'ccm-keys-deploy-'));
    out = join(keys, 'deploy');
    await generateKeys(join(keys, 'all'), {
      signers: ['key-broker', 'saga-coordinator', 'host-agent', 'operator'],
      hostIds: ['h1'],
    });
    await deployKeys(join(keys, 'all'), out, ['key-broker', 'saga-coordinator', 'host-agent@h1']);
  });
  afterAll(async () => {
    await rm(keys, { recursive: true, force: true });
  });

  it('lists the identities that have secrets', async () => {
    expect(await identitiesIn(join(keys, 'all'))).toEqual([
      'host-agent',
      'host-agent@h1',
      'key-broker',
      'operator',
      'saga-coordinator',
    ]);
  });

  it('gives each identity a dir with only its own secrets and the trust store, secrets 0600', async () => {
    expect((await readdir(join(out, 'key-broker'))).sort()).toEqual([
      'key-broker.nk',
      'key-broker.sign.pem',
      'trust.json',
    ]);
    expect((await stat(join(out, 'key-broker', 'key-broker.sign.pem'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(out, 'key-broker', 'key-broker.nk'))).mode & 0o777).toBe(0o600);
    const mine = await loadIdentity(join(out, 'key-broker'), 'key-broker');
    expect(mine.keyId).toBe((await loadIdentity(join(keys, 'all'), 'key-broker')).keyId);
    expect((await loadTrustStore(join(out, 'key-broker'))).size).toBe(5);
  });

  it('a process given its dir cannot load anybody else, and the operator key is nowhere', async () => {
    await expect(loadIdentity(join(out, 'key-broker'), 'saga-coordinator')).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    const pinned = await loadIdentity(join(out, 'host-agent@h1'), 'host-agent', 'h1');
    expect((await loadTrustStore(join(out, 'host-agent@h1'))).lookup(pinned.keyId)?.scope).toBe('h1');
    const everything = await Promise.all((await readdir(out)).map((d) => readdir(join(out, d))));
    expect(everything.flat().filter((f) => f.startsWith('operator'))).toEqual([]);
    expect(await readdir(join(out, 'nats'))).toEqual(['nats-auth.conf']);
  });

  it('a re-run replaces what a dir held, leaving no stale secret behind', async () => {
    await writeFile(join(out, 'key-broker', 'stale.nk'), 'x');
    await deployKeys(join(keys, 'all'), out, ['key-broker']);
    expect(await readdir(join(out, 'key-broker'))).not.toContain('stale.nk');
  });

  it('an identity without keys is a typed error naming it, and nothing is written', async () => {
    const fresh = join(keys, 'fresh');
    await expect(deployKeys(join(keys, 'all'), fresh, ['vm-lifecycle'])).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      message: expect.stringContaining('no keys for vm-lifecycle') as unknown,
    });
    await expect(stat(fresh)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
