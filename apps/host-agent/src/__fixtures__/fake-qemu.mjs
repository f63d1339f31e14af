#!/usr/bin/env node
// A stand-in for qemu-system-x86_64 that misbehaves on purpose (CCM_FAKE_QEMU_MODE):
//   die        — prints an error and exits 1 before opening its QMP socket (like a bad -kernel);
//   garbage    — greets with a line that is not JSON;
//   bad-shape  — negotiates QMP, then answers `stop` with a `return` that is not an object;
//   bad-json   — negotiates QMP, then answers `stop` with a line that is not JSON.
// Scripted outgoing migrations (the source side of `migrate`, as query-migrate shows it):
//   cancel-race     — the first query-migrate after `migrate` is answered only once `migrate_cancel`
//                     arrives, and says `pre-switchover`: a reply QEMU computed just before it read the
//                     cancel, still in flight when the agent sent it. Then `cancelled`.
//   postcopy-breaks — pre-copy makes no progress (a stall) until `migrate-start-postcopy`; then one
//                     `postcopy-active`, then `postcopy-paused`: the stream broke after the destination
//                     started running.
//   postcopy-breaks-unseen — the same, but the stream breaks before any query-migrate saw
//                     `postcopy-active`.
//   completes       — `migrate` completes at once (query-migrate `completed`, the source `postmigrate`
//                     until `cont`).
//   active          — `migrate` stays active until `migrate_cancel`.
// A file `fake-qemu-mode` beside the pidfile, read at each `migrate`, sets the mode of that migration
// (one VM can then be cancelled once and complete later).
// A destination (`migrate-incoming`) answers query-migrate `setup` with the port it "listens" on; no
// stream ever arrives, unless the test sends it SIGUSR2: then the guest "arrived" and runs (a RESUME
// event on every QMP connection).
// Every command it receives is appended to `qmp-commands.log` beside the pidfile.
// `query-sev-capabilities` is answered with the JSON in the file CCM_FAKE_QEMU_SEV_CAPS names (a
// stand-in for SEV firmware), or with QEMU's error when there is none.
// It understands just enough of QEMU's command line: -qmp unix:PATH,server=on,wait=off and -pidfile PATH.
import { appendFileSync, existsSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';

let mode = process.env.CCM_FAKE_QEMU_MODE ?? 'bad-shape';
const arg = (name) => process.argv[process.argv.indexOf(name) + 1];
const socket = arg('-qmp')
  .replace(/^unix:/, '')
  .split(',')[0];
if (mode === 'die') {
  process.stderr.write('qemu-system-x86_64: could not load kernel: fake QEMU told to die at start\n');
  process.exit(1);
}
writeFileSync(arg('-pidfile'), `${process.pid}\n`);
const commandLog = join(dirname(arg('-pidfile')), 'qmp-commands.log');
rmSync(socket, { force: true });
const greeting = {
  QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'fake' }, capabilities: [] },
};

/** The outgoing migration's script: what query-migrate says next. */
const migration = {
  status: 'none',
  /** A query-migrate reply held back (cancel-race). */
  held: undefined,
  postcopyPolls: 0,
  /** A destination: `migrate-incoming` was sent. */
  incoming: false,
};
const MIGRATION_TIMES = { 'total-time': 40, downtime: 5, 'setup-time': 1 };
const MiB = 1 << 20;
const info = (status, extra = {}) => ({
  status,
  ...(['active', 'pre-switchover', 'postcopy-active', 'postcopy-paused', 'completed'].includes(status)
    ? {
        ram: {
          transferred: 24 * MiB,
          remaining: 8 * MiB,
          total: 32 * MiB,
          duplicate: 0,
          normal: 6144,
          'normal-bytes': 24 * MiB,
          'dirty-sync-count': 3,
          'dirty-pages-rate': 2560,
          'page-size': 4096,
          mbps: 32,
        },
      }
    : {}),
  ...extra,
});

/** query-migrate: undefined holds the reply back. */
function queryMigrate(reply) {
  if (migration.incoming && migration.status === 'none') {
    const port = String(40000 + (process.pid % 20000));
    reply({ return: { status: 'setup', 'socket-address': [{ type: 'inet', host: '127.0.0.1', port }] } });
    return;
  }
  if (migration.status === 'completed') {
    reply({ return: info('completed', MIGRATION_TIMES) });
    return;
  }
  if (mode === 'cancel-race' && migration.status === 'active' && !migration.held) {
    migration.held = () => reply({ return: info('pre-switchover') });
    return;
  }
  if (migration.status === 'postcopy-active' && mode === 'postcopy-breaks' && migration.postcopyPolls++ >= 1)
    migration.status = 'postcopy-paused';
  const broke = { 'error-desc': 'Detected IO failure for postcopy. Migration paused.' };
  reply({ return: info(migration.status, migration.status === 'postcopy-paused' ? broke : {}) });
}

/** Open QMP connections (for events). */
const clients = new Set();
process.on('SIGUSR2', () => {
  migration.incoming = false;
  const now = Date.now();
  const timestamp = { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 };
  for (const c of clients) c.write(`${JSON.stringify({ event: 'RESUME', data: {}, timestamp })}\n`);
});

createServer((sock) => {
  clients.add(sock);
  sock.on('close', () => clients.delete(sock));
  sock.write(mode === 'garbage' ? 'this is not QMP\n' : `${JSON.stringify(greeting)}\n`);
  let buf = '';
  sock.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const msg = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      appendFileSync(commandLog, `${msg.execute}\n`);
      const reply = (body) => sock.write(`${JSON.stringify({ ...body, id: msg.id })}\n`);
      if (msg.execute === 'query-sev-capabilities') {
        const caps = process.env.CCM_FAKE_QEMU_SEV_CAPS;
        reply(
          caps
            ? { return: JSON.parse(readFileSync(caps, 'utf8')) }
            : { error: { class: 'GenericError', desc: 'SEV is not enabled in KVM' } },
        );
      } else if (msg.execute === 'stop' && mode === 'bad-json') sock.write('{"return": {}, "id": \n');
      else if (msg.execute === 'stop' && mode === 'bad-shape') reply({ return: 42 });
      else if (msg.execute === 'migrate') {
        const modeFile = join(dirname(arg('-pidfile')), 'fake-qemu-mode');
        if (existsSync(modeFile)) mode = readFileSync(modeFile, 'utf8').trim();
        migration.status = mode === 'completes' ? 'completed' : 'active';
        reply({ return: {} });
      } else if (msg.execute === 'migrate-incoming') {
        migration.incoming = true;
        reply({ return: {} });
      } else if (msg.execute === 'cont') {
        if (migration.status === 'completed') migration.status = 'none';
        reply({ return: {} });
      } else if (msg.execute === 'query-migrate') queryMigrate(reply);
      else if (msg.execute === 'migrate_cancel') {
        migration.held?.();
        migration.held = undefined;
        if (!migration.status.startsWith('postcopy')) migration.status = 'cancelled';
        reply({ return: {} });
      } else if (msg.execute === 'migrate-start-postcopy') {
        migration.status = mode === 'postcopy-breaks' ? 'postcopy-active' : 'postcopy-paused';
        reply({ return: {} });
      } else if (msg.execute === 'query-status') {
        const stopped = migration.status.startsWith('postcopy') || migration.status === 'completed';
        reply({ return: { running: !stopped, status: stopped ? 'postmigrate' : 'running' } });
      } else if (msg.execute === 'quit') {
        reply({ return: {} });
        setTimeout(() => process.exit(0), 10);
      } else reply({ return: {} });
    }
  });
  sock.on('error', () => undefined);
}).listen(socket);
process.on('SIGTERM', () => process.exit(0));
