import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { QmpClient, type QemuProcess } from '@ccm/qmp';

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

/** How a VM process ended. */
export interface VmExit {
  code: number | null;
  signal: string | null;
}

/** A running VM process with a negotiated QMP connection, started now or re-adopted after a restart. */
export interface VmProcess {
  readonly pid: number;
  readonly qmp: QmpClient;
  readonly paths: VmPaths;
  readonly adopted: boolean;
  /** Resolves once the process is gone (for an adopted process the exit status is unknown: nulls). */
  readonly exited: Promise<VmExit>;
  isAlive(): boolean;
  /** The last lines the process wrote to stderr (from its log file, so it survives restarts). */
  stderrTail(): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. Safe to call twice. */
  kill(graceMs?: number): Promise<void>;
  /** `quit` over QMP, falling back to {@link VmProcess.kill}. */
  quit(graceMs?: number): Promise<void>;
}

const DEFAULT_GRACE_MS = 3_000;
const ADOPT_POLL_MS = 250;
const TAIL_BYTES = 4 * 1024;

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

async function tail(path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.slice(-TAIL_BYTES);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Waits for `exited`, sending SIGKILL to `pid` if it takes longer than `graceMs`. */
async function awaitExit(pid: number, exited: Promise<VmExit>, graceMs: number): Promise<void> {
  const timer = setTimeout(() => signal(pid, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

function withControls(base: Omit<VmProcess, 'kill' | 'quit' | 'stderrTail'>): VmProcess {
  const kill = async (graceMs = DEFAULT_GRACE_MS): Promise<void> => {
    if (base.isAlive()) signal(base.pid, 'SIGTERM');
    await awaitExit(base.pid, base.exited, graceMs);
    await base.qmp.close();
  };
  return {
    ...base,
    stderrTail: () => tail(base.paths.stderrLog),
    kill,
    quit: async (graceMs = DEFAULT_GRACE_MS) => {
      const asked =
        base.isAlive() &&
        (await base.qmp.execute('quit', undefined, { timeoutMs: graceMs }).then(
          () => true,
          () => false,
        ));
      if (asked) await Promise.race([base.exited, new Promise((r) => setTimeout(r, graceMs))]);
      await kill(graceMs);
    },
  };
}

/** Wraps a QEMU started by `startQemu` (this agent is its parent: the exit status is known). */
export function fromQemuProcess(q: QemuProcess, paths: VmPaths): VmProcess {
  return withControls({
    pid: q.pid,
    qmp: q.qmp,
    paths,
    adopted: false,
    exited: q.exited,
    isAlive: () => !q.exitStatus() && pidAlive(q.pid),
  });
}

/** Wraps a process this agent spawned (the simulated hypervisor). */
export function fromChild(
  pid: number,
  qmp: QmpClient,
  paths: VmPaths,
  exited: Promise<VmExit>,
  isExited: () => boolean,
): VmProcess {
  return withControls({
    pid,
    qmp,
    paths,
    adopted: false,
    exited,
    isAlive: () => !isExited() && pidAlive(pid),
  });
}

/**
 * Re-attaches to a VM process a previous agent started: checks the pid is that VM's, connects to its
 * QMP socket, and watches it (socket close, then pid gone). Undefined when the process is not there.
 */
export async function adoptVmProcess(
  paths: VmPaths,
  pid: number,
  opts: { connectTimeoutMs: number; commandTimeoutMs: number },
): Promise<VmProcess | undefined> {
  if (!(await isVmProcess(pid, paths.runDir))) return undefined;
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(paths.qmpSocket, {
      connectTimeoutMs: opts.connectTimeoutMs,
      commandTimeoutMs: opts.commandTimeoutMs,
    });
  } catch {
    return undefined;
  }
  let gone = false;
  const exited = new Promise<VmExit>((resolve) => {
    const check = (): void => {
      if (pidAlive(pid)) {
        setTimeout(check, ADOPT_POLL_MS).unref();
        return;
      }
      gone = true;
      resolve({ code: null, signal: null });
    };
    // The socket closes when the process exits; poll the pid from then on (and slowly before, in
    // case the socket outlives a wedged process).
    void qmp.closed.then(check);
    const slow = setInterval(() => {
      if (!pidAlive(pid)) {
        clearInterval(slow);
        check();
      }
    }, 2_000);
    slow.unref();
    void qmp.closed.then(() => clearInterval(slow));
  });
  return withControls({ pid, qmp, paths, adopted: true, exited, isAlive: () => !gone && pidAlive(pid) });
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
        signal(pid, 'SIGKILL');
        killed.push(pid);
      }
    }
  }
  const deadline = Date.now() + timeoutMs;
  while (killed.some(pidAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return killed;
}
