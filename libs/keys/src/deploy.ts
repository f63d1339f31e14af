import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CcmError, ErrorCodes } from '@ccm/contracts';
import { NATS_AUTH_FILE, NATS_SEED_SUFFIX, SIGNING_KEY_SUFFIX, TRUST_FILE } from './identity.js';

const SECRET_SUFFIXES = [NATS_SEED_SUFFIX, SIGNING_KEY_SUFFIX] as const;

/**
 * Splits a keys dir into one dir per deployed process, so each holds only its own secrets:
 * `<out>/<identity>/` gets that identity's NKEY seed and signing key plus the public trust store, and
 * `<out>/nats/` gets only the nats-server authorization include. A process given its dir can neither
 * connect nor sign as anybody else; the operator key stays in the source dir, with whoever runs `ccm`.
 * Files are copied with their modes (secrets 0600); a re-run replaces what was there.
 */
export async function deployKeys(
  keysDir: string,
  outDir: string,
  identities: readonly string[],
): Promise<void> {
  for (const identity of identities) {
    const missing = SECRET_SUFFIXES.map((s) => join(keysDir, `${identity}${s}`)).filter(
      (f) => !existsSync(f),
    );
    if (missing.length)
      throw new CcmError(
        ErrorCodes.ValidationFailed,
        `no keys for ${identity} in ${keysDir} (missing ${missing.join(', ')}): run ccm-keys for it first`,
        { retryable: false },
      );
  }
  await mkdir(outDir, { recursive: true, mode: 0o700 });
  for (const identity of identities) {
    const dir = join(outDir, identity);
    await clear(dir);
    for (const f of [...SECRET_SUFFIXES.map((s) => `${identity}${s}`), TRUST_FILE])
      await copyFile(join(keysDir, f), join(dir, f));
  }
  const natsDir = join(outDir, 'nats');
  await clear(natsDir);
  await copyFile(join(keysDir, NATS_AUTH_FILE), join(natsDir, NATS_AUTH_FILE));
}

/** Empties `dir` (a mounted volume cannot be removed, only its contents), creating it when missing. */
async function clear(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const entry of await readdir(dir)) await rm(join(dir, entry), { recursive: true, force: true });
}

/** The identity stems that have secrets in a keys dir (`key-broker`, `host-agent@host-a`, ...). */
export async function identitiesIn(keysDir: string): Promise<string[]> {
  const names = (await readdir(keysDir))
    .filter((f) => f.endsWith(NATS_SEED_SUFFIX))
    .map((f) => f.slice(0, -NATS_SEED_SUFFIX.length));
  return names.filter((n) => existsSync(join(keysDir, `${n}${SIGNING_KEY_SUFFIX}`))).sort();
}
