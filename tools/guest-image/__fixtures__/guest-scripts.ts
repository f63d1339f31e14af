import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Writes a script for the container guest's fw_cfg run channel: a shebang, `vars` as shell
 * assignments, container-lib.sh's helpers, then the named fixture scripts. Returns its path.
 */
export async function guestScript(
  out: string,
  parts: readonly string[],
  vars: Record<string, string> = {},
): Promise<string> {
  const read = (name: string): Promise<string> => readFile(join(import.meta.dirname, name), 'utf8');
  const body = await Promise.all(['container-lib.sh', ...parts].map(read));
  const assignments = Object.entries(vars).map(([k, v]) => `${k}='${v}'\n`);
  await writeFile(out, ['#!/bin/sh\n', ...assignments, ...body].join(''), { mode: 0o700 });
  return out;
}
