import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The runtime dir of one VM process (`<run root>/<host>/vms/<vm>/`): the files a host-agent keeps there,
 * and the checks that a pid in it is still that VM's process. Shared by the host-agent's drivers and by
 * whoever started agents for a while (a test, the demo, a benchmark) and must end the VMs they left.
 */

/** The files of one VM's runtime dir (the same for both drivers, so adoption is driver-independent). */
export interface VmPaths {
  runDir: string;
  qmpSocket: string;
  pidfile: string;
  serialLog: string;
  /** The process's stdout and stderr. */
  stderrLog: string;
  /** What the VM was started with (written before the process starts). */
  specFile: string;
  /** The sealed SEV context of an emulated launch (QEMU without SEV firmware), 0600. */
  sevContext: string;
  /**
   * The file backing the guest's RAM at an emulated SEV launch (0600), where the agent writes the
   * launch's secret page: with the software secure processor, guest RAM is host memory.
   */
  guestRam: string;
}

/** File name of {@link VmPaths.sevContext}. */
export const SEV_CONTEXT_FILE = 'sev-context.bin';
/** File name of {@link VmPaths.guestRam}. */
export const GUEST_RAM_FILE = 'guest-ram';

export function vmPaths(runDir: string): VmPaths {
  return {
    runDir,
    qmpSocket: join(runDir, 'qmp.sock'),
    pidfile: join(runDir, 'vm.pid'),
    serialLog: join(runDir, 'serial.log'),
    stderrLog: join(runDir, 'qemu.stderr.log'),
    specFile: join(runDir, 'spec.json'),
    sevContext: join(runDir, SEV_CONTEXT_FILE),
    guestRam: join(runDir, GUEST_RAM_FILE),
  };
}

/** Whether `pid` is a live process (a zombie is dead: nobody may reap orphans on this host). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return procState(pid) !== 'Z';
}

function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/**
 * Whether `pid` is the process of the VM in `runDir`: alive and with the runtime dir on its command
 * line (a recycled pid belongs to something else).
 */
export async function isVmProcess(pid: number, runDir: string): Promise<boolean> {
  if (!pidAlive(pid)) return false;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.split('\0').some((arg) => arg.includes(runDir));
}

export async function readPid(paths: VmPaths): Promise<number | undefined> {
  const pid = Number.parseInt((await readFile(paths.pidfile, 'utf8').catch(() => '')).trim(), 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** Sends `sig` to `pid`, which may be gone already. */
export function signalPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * SIGKILLs every VM process left under `runRoot` (`<host>/vms/<vm>/vm.pid`, each checked to be that
 * VM's process) and waits until they are gone: agents leave VMs running when they stop, so whoever
 * started agents for a while (a test, the demo, a benchmark) ends their VMs with this. Returns the pids.
 */
export async function killVmProcesses(runRoot: string, timeoutMs = 5_000): Promise<number[]> {
  const killed: number[] = [];
  for (const host of await readdir(runRoot).catch(() => [])) {
    for (const vm of await readdir(join(runRoot, host, 'vms')).catch(() => [])) {
      const dir = join(runRoot, host, 'vms', vm);
      const pid = await readPid(vmPaths(dir));
      if (pid && (await isVmProcess(pid, dir))) {
        signalPid(pid, 'SIGKILL');
        killed.push(pid);
      }
    }
  }
  const deadline = Date.now() + timeoutMs;
  while (killed.some(pidAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return killed;
}
