#!/usr/bin/env node
// A stand-in for qemu-system-x86_64 that misbehaves on purpose (CCM_FAKE_QEMU_MODE):
//   die        — prints an error and exits 1 before opening its QMP socket (like a bad -kernel);
//   garbage    — greets with a line that is not JSON;
//   bad-shape  — negotiates QMP, then answers `stop` with a `return` that is not an object;
//   bad-json   — negotiates QMP, then answers `stop` with a line that is not JSON.
// `query-sev-capabilities` is answered with the JSON in the file CCM_FAKE_QEMU_SEV_CAPS names (a
// stand-in for SEV firmware), or with QEMU's error when there is none.
// It understands just enough of QEMU's command line: -qmp unix:PATH,server=on,wait=off and -pidfile PATH.
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';

const mode = process.env.CCM_FAKE_QEMU_MODE ?? 'bad-shape';
const arg = (name) => process.argv[process.argv.indexOf(name) + 1];
const socket = arg('-qmp')
  .replace(/^unix:/, '')
  .split(',')[0];
if (mode === 'die') {
  process.stderr.write('qemu-system-x86_64: could not load kernel: fake QEMU told to die at start\n');
  process.exit(1);
}
writeFileSync(arg('-pidfile'), `${process.pid}\n`);
rmSync(socket, { force: true });
const greeting = {
  QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'fake' }, capabilities: [] },
};
createServer((sock) => {
  sock.write(mode === 'garbage' ? 'this is not QMP\n' : `${JSON.stringify(greeting)}\n`);
  let buf = '';
  sock.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const msg = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      const reply = (body) => sock.write(`${JSON.stringify({ ...body, id: msg.id })}\n`);
      if (msg.execute === 'query-sev-capabilities') {
        const caps = process.env.CCM_FAKE_QEMU_SEV_CAPS;
        reply(
          caps
            ? { return: JSON.parse(readFileSync(caps, 'utf8')) }
            : { error: { class: 'GenericError', desc: 'SEV is not enabled in KVM' } },
        );
      } else if (msg.execute === 'stop' && mode === 'bad-json') sock.write('{"return": {}, "id": \n');
      else if (msg.execute === 'stop') reply({ return: 42 });
      else if (msg.execute === 'quit') {
        reply({ return: {} });
        setTimeout(() => process.exit(0), 10);
      } else reply({ return: {} });
    }
  });
  sock.on('error', () => undefined);
}).listen(socket);
process.on('SIGTERM', () => process.exit(0));
