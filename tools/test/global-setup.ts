import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { ensureNatsServer } from '../../libs/testing/src/nats-server.js';

/**
 * Runs once before the suite: makes sure nats-server 2.10 is there (trixie's, from the rootfs that
 * `bash tools/dev.sh setup` builds, or CCM_NATS_SERVER_BIN) and compiles dist/ so e2e specs can start every app as a real process.
 */
export default function setup(): void {
  const root = resolve(import.meta.dirname, '..', '..');
  process.stdout.write(`nats-server: ${ensureNatsServer()}\n`);
  execFileSync(process.execPath, [resolve(root, 'tools/build.mjs')], { cwd: root, stdio: 'inherit' });
}
