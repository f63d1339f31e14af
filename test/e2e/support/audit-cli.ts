import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '@ccm/testing';

/** The built `ccm` (dist/apps/cli), run as its own process. */
export const CCM_BIN = join(REPO_ROOT, 'dist', 'apps', 'cli', 'src', 'main.js');

export interface CcmRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built `ccm` with `args` (never throws on a non-zero exit; a hang is killed after `timeoutMs`). */
export function ccm(
  args: string[],
  env: Record<string, string> = {},
  cwd = REPO_ROOT,
  timeoutMs = 60_000,
): Promise<CcmRun> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [CCM_BIN, ...args],
      { cwd, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (err as { code?: unknown }).code : 0;
        if (typeof code !== 'number') return reject(err ?? new Error('ccm did not exit'));
        resolve({ code, stdout, stderr });
      },
    );
  });
}
