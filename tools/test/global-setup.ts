import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { ensureNatsServer } from '../../libs/testing/src/nats-server.js';

/**
 * Runs once before the suite: makes sure nats-server is installed (the launcher installs Debian's
 * package when missing) and compiles dist/ so e2e specs can start every app as a real process.
 */
export default function setup(): void {
  const root = resolve(import.meta.dirname, '..', '..');
  ensureNatsServer({ log: (m) => process.stdout.write(`${m}\n`) });
  execFileSync(process.execPath, [resolve(root, 'tools/build.mjs')], { cwd: root, stdio: 'inherit' });
}
