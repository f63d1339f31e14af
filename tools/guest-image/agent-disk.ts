import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { TRUST_FILE } from '@ccm/keys';
import { REPO_ROOT } from '@ccm/testing';
import { buildAppDisk, shellEnvFile } from './app-disk.js';

/**
 * The run script (fw_cfg `opt/ccm/run`) that mounts the app disk and starts the guest-agent from it
 * with the disk's ccm.env, then what the host-agent passes the VM alone in fw_cfg `opt/ccm/vm`.
 */
export const AGENT_RUN_SCRIPT = join(REPO_ROOT, 'tools', 'guest-image', '__fixtures__', 'agent-run.sh');

/**
 * Writes `out`: an app disk with the built guest-agent, `env` as its ccm.env (CCM_KEYS_DIR pointing at
 * the disk's keys dir) and the keys of `keysDir`. `publicKeysOnly`: the keys dir holds the trust store
 * alone, no private key (a guest launched attested whose key-broker seals the guest-agent's identity
 * into its launch secret), copied to `<out>.public-keys`.
 */
export async function writeGuestAgentDisk(o: {
  out: string;
  env: Record<string, string>;
  keysDir: string;
  publicKeysOnly?: boolean;
}): Promise<string> {
  let keys = o.keysDir;
  if (o.publicKeysOnly) {
    keys = `${o.out}.public-keys`;
    await mkdir(keys, { recursive: true });
    await copyFile(join(o.keysDir, TRUST_FILE), join(keys, TRUST_FILE));
  }
  const disk = await buildAppDisk({
    repoRoot: REPO_ROOT,
    entry: 'dist/apps/guest-agent/src/main.js',
    out: o.out,
    extra: { 'ccm.env': shellEnvFile({ ...o.env, CCM_KEYS_DIR: '/run/ccm/app/keys' }) },
    extraDirs: { keys },
  });
  return disk.path;
}
