#!/usr/bin/env node
/**
 * The local stack launcher: `node dist/tools/stack/main.js [--state DIR] [--database-url URL] [--host ID...]`
 * brings up NATS, Postgres and every service, prints where they listen, and runs until Ctrl-C.
 * A service that dies is reported and restarted with backoff; one that dies 5 times within 60 s is
 * reported as a crash loop and left down while the rest keep running (the launcher does not exit).
 * SIGTERM/SIGINT stop everything it started; if the launcher itself is killed, its watchdog does.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '@ccm/testing';
import { startLocalStack } from './stack.js';

let values: { state?: string; 'database-url'?: string; host?: string[] };
try {
  ({ values } = parseArgs({
    options: {
      state: { type: 'string' },
      'database-url': { type: 'string' },
      host: { type: 'string', multiple: true },
    },
    strict: true,
  }));
} catch (err) {
  process.stderr.write(
    `ccm stack: ${(err as Error).message}\nusage: stack [--state DIR] [--database-url URL] [--host ID ...]\n`,
  );
  process.exit(2);
}
const stateDir = resolve(
  values.state ?? process.env['CCM_STATE_DIR'] ?? resolve(REPO_ROOT, '.state', 'stack'),
);
const stack = await startLocalStack({
  stateDir,
  databaseUrl: values['database-url'] ?? process.env['CCM_DATABASE_URL'],
  hosts: values.host,
  log: (m) => process.stdout.write(`[stack] ${m}\n`),
});
for (const s of stack.services)
  process.stdout.write(`[stack] ${s.app.padEnd(22)} http://127.0.0.1:${s.httpPort}/health\n`);
process.stdout.write(
  `[stack] CCM_NATS_URL=${stack.natsUrl} CCM_KEYS_DIR=${stack.keysDir}\n[stack] running; Ctrl-C stops everything\n`,
);
const stop = () => {
  process.stdout.write('[stack] stopping\n');
  void stack.stop().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
