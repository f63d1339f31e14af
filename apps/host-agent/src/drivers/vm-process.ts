import { readFile } from 'node:fs/promises';
import {
  isVmProcess,
  pidAlive,
  QmpClient,
  signalPid as signal,
  type QemuProcess,
  type VmPaths,
} from '@ccm/qmp';

// The runtime dir's layout and pid checks live in @ccm/qmp (tests and tools use them too).
export { GUEST_RAM_FILE, pidAlive, readPid, SEV_CONTEXT_FILE, vmPaths, type VmPaths } from '@ccm/qmp';

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

async function tail(path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.slice(-TAIL_BYTES);
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
