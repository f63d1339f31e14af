/**
 * A simulated VM process: `node sim-vm.main.js <runDir>`. Reads `<runDir>/spec.json` (written by the
 * host-agent), writes its pid to `vm.pid`, serves QMP on `qmp.sock` and its console on `serial.log`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ChildProcess } from 'node:child_process';
import { guestInsideSettings, startGuestInside } from './guest-inside.js';
import { openSimSev } from './open-sim-sev.js';
import { SimVm, type SimVmSpec } from './sim-vm.js';

const runDir = process.argv[2];
if (!runDir) {
  process.stderr.write('usage: sim-vm.main.js <runDir>\n');
  process.exit(2);
}

let guest: ChildProcess | undefined;

function exit(code: number, why: string): void {
  guest?.kill('SIGTERM');
  if (code !== 0) process.stderr.write(`ccm-sim-vm: ${why}\n`);
  process.exit(code);
}

try {
  const spec = JSON.parse(readFileSync(join(runDir, 'spec.json'), 'utf8')) as SimVmSpec & { vmId?: string };
  const sev = spec.sev ? openSimSev(spec, process.env['CCM_SEV_EMULATOR_DIR']) : undefined;
  const inside = guestInsideSettings(spec.vmId, runDir, process.env);
  const vm = new SimVm(
    spec,
    { qmpSocket: join(runDir, 'qmp.sock'), serialLog: join(runDir, 'serial.log') },
    sev,
    exit,
    {
      booted: () => {
        if (!inside) return;
        try {
          guest = startGuestInside(inside);
        } catch (err) {
          process.stderr.write(
            `ccm-sim-vm: the guest-agent inside did not start: ${(err as Error).message}\n`,
          );
        }
      },
    },
  );
  writeFileSync(join(runDir, 'vm.pid'), `${process.pid}\n`);
  await vm.start();
  process.on('SIGTERM', () => exit(0, 'SIGTERM'));
  process.on('SIGINT', () => exit(0, 'SIGINT'));
} catch (err) {
  exit(1, `cannot start: ${(err as Error).message}`);
}
