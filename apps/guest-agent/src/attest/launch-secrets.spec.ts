import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LAUNCH_SECRET_GUIDS, LAUNCH_SECRET_PAGE } from '@ccm/contracts';
import { generateKeys, guestAgentSecretEntries, loadIdentity, type Identity } from '@ccm/keys';
import { createServiceApp } from '@ccm/runtime';
import { buildSevSecretTable, type SevSecretEntry } from '@ccm/sev';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestAgent } from '../app.js';
import { configSchema } from '../config.js';
import { guestAgentIdentityFromLaunch } from './launch-secrets.js';

/** The table a launch gets from a key-broker that holds the guest-agent's identity. */
const launchEntries = (id: Identity): SevSecretEntry[] => [
  { guid: LAUNCH_SECRET_GUIDS.identity, data: randomBytes(32) },
  { guid: LAUNCH_SECRET_GUIDS.disk, data: randomBytes(32) },
  ...guestAgentSecretEntries(id),
];

describe("the guest-agent's identity from its attested launch's secret table", () => {
  let dir: string;
  let identity: Identity;
  const env = (table: string, sev = 'sev') => ({
    CCM_KEYS_DIR: join(dir, 'public-keys'),
    CCM_VM_ID: 'vm-1',
    CCM_GUEST_SEV: sev,
    CCM_GUEST_SECRET_TABLE: table,
  });
  const tableFile = async (name: string, bytes: Uint8Array) => {
    const path = join(dir, name);
    await writeFile(path, bytes);
    return path;
  };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ccm-ga-secret-'));
    await generateKeys(join(dir, 'keys'), { signers: ['guest-agent'] });
    identity = await loadIdentity(join(dir, 'keys'), 'guest-agent');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('takes it from the table, which fits the secret page with room to spare', async () => {
    const table = buildSevSecretTable(launchEntries(identity), { maxSize: LAUNCH_SECRET_PAGE.bytes });
    expect(table.length).toBeLessThanOrEqual(LAUNCH_SECRET_PAGE.bytes / 8);
    // What ccm-init copies: the whole page, zero after the table.
    const page = Buffer.alloc(LAUNCH_SECRET_PAGE.bytes);
    table.copy(page);
    const config = configSchema.parse(env(await tableFile('page', page)));
    expect(guestAgentIdentityFromLaunch(config)).toMatchObject({
      keyId: identity.keyId,
      natsPublicKey: identity.natsPublicKey,
    });
  });

  it('leaves it to the keys dir without an attested launch, or when the table carries none', async () => {
    const onlyMac = buildSevSecretTable(launchEntries(identity).slice(0, 2));
    const path = await tableFile('only-mac', onlyMac);
    expect(guestAgentIdentityFromLaunch(configSchema.parse(env(path)))).toBeUndefined();
    expect(guestAgentIdentityFromLaunch(configSchema.parse(env(path, 'none')))).toBeUndefined();
  });

  it('refuses to start on a table with a malformed entry: SECRET_TABLE_INVALID naming it', async () => {
    const entries = launchEntries(identity);
    entries[2] = { guid: entries[2].guid, data: entries[2].data.subarray(0, 47) };
    const path = await tableFile('bad-entry', buildSevSecretTable(entries));
    await expect(createServiceApp(guestAgent, env(path))).rejects.toMatchObject({
      code: 'SECRET_TABLE_INVALID',
      message: `${path}: secret table entry ${LAUNCH_SECRET_GUIDS.guestAgentSigningKey}: not a PKCS#8 private key`,
      details: { guid: LAUNCH_SECRET_GUIDS.guestAgentSigningKey },
    });
  });

  it('refuses to start on a table whose entry overruns it', async () => {
    const table = buildSevSecretTable(launchEntries(identity));
    table.writeUInt32LE(4000, 16 + 4 + 52 + 52 + 16); // the signing key entry's length
    const path = await tableFile('overrun', table);
    await expect(createServiceApp(guestAgent, env(path))).rejects.toMatchObject({
      code: 'SECRET_TABLE_INVALID',
      details: { source: path },
    });
  });
});
