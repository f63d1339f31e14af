#!/usr/bin/env node
/**
 * The stack launcher's watchdog: `watchdog.js <stateDir>`, spawned by the launcher with a pipe on its
 * stdin and in its own session, so neither Ctrl-C nor a kill of the launcher's group reaches it. Node
 * has no prctl(PR_SET_PDEATHSIG); instead the kernel closes the pipe when the launcher dies, however it
 * dies. A launcher that stops cleanly writes `bye` first; on EOF without it the watchdog stops every
 * process recorded in `<stateDir>/launcher-pids/` (services, then NATS and Postgres) and exits.
 */
import { stopRecorded } from './pids.js';

const stateDir = process.argv[2];
if (!stateDir) {
  process.stderr.write('usage: watchdog <stateDir>\n');
  process.exit(2);
}
let input = '';
let acted = false;
process.stdin.on('data', (d: Buffer) => (input += d.toString()));
const onParentGone = () => {
  if (acted) return;
  acted = true;
  if (input.includes('bye')) process.exit(0);
  void stopRecorded(stateDir).then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.stdin.once('end', onParentGone);
process.stdin.once('close', onParentGone);
process.stdin.once('error', onParentGone);
// Signals meant for the launcher's terminal never stop the watchdog before it has cleaned up.
process.on('SIGINT', () => undefined);
process.on('SIGHUP', () => undefined);
