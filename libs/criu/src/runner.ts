import { spawn } from 'node:child_process';
import { CriuNotFoundError } from './errors.js';

/** What one command run ended with. */
export interface RunResult {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The deadline passed and the command's process group was killed. */
  readonly timedOut: boolean;
}

/**
 * Runs an argv (never a shell string: no argument is ever interpreted by a shell). The real guest
 * runs CRIU directly ({@link execRunner}); the host tests run it inside the trixie namespace
 * ({@link nsenterRunner}).
 */
export interface CommandRunner {
  run(argv: readonly string[], opts: RunOptions): Promise<RunResult>;
}

export interface RunOptions {
  readonly timeoutMs: number;
  /**
   * `ignore`: the command's stdin, stdout and stderr are /dev/null (nothing is captured). A container
   * started or restored detached takes runc's stdio as its own; a pipe to this process there would be a
   * file CRIU cannot dump later.
   */
  readonly stdio?: 'pipe' | 'ignore';
}

const KEEP_BYTES = 64 * 1024;
const tail = (s: string): string => (s.length > KEEP_BYTES ? s.slice(-KEEP_BYTES) : s);

/**
 * Spawns the argv in its own process group with stdin closed; at the deadline the whole group is
 * SIGKILLed (CRIU can hang after a parasite error, and must not be left behind).
 */
export function execRunner(env: NodeJS.ProcessEnv = process.env): CommandRunner {
  return {
    run: (argv, { timeoutMs, stdio = 'pipe' }) =>
      new Promise<RunResult>((resolve, reject) => {
        const [cmd, ...args] = argv;
        const child = spawn(cmd, args, {
          detached: true,
          stdio: stdio === 'ignore' ? 'ignore' : ['ignore', 'pipe', 'pipe'],
          env,
        });
        let stdout = '';
        let stderr = '';
        let timedOut = false;
        child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout = tail(stdout + d)));
        child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr = tail(stderr + d)));
        const timer = setTimeout(() => {
          timedOut = true;
          killGroup(child.pid);
        }, timeoutMs);
        child.on('error', (err: NodeJS.ErrnoException) => {
          clearTimeout(timer);
          reject(err.code === 'ENOENT' ? new CriuNotFoundError(cmd, { cause: err }) : err);
        });
        child.on('close', (exitCode, signal) => {
          clearTimeout(timer);
          resolve({ exitCode, signal, stdout, stderr, timedOut });
        });
      }),
  };
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Runs every argv inside the mount and PID namespaces of `initPid` (tools/criu/trixie-ns.sh). */
export function nsenterRunner(initPid: number, base: CommandRunner = execRunner()): CommandRunner {
  if (!Number.isInteger(initPid) || initPid < 1) throw new RangeError('initPid must be a positive integer');
  return {
    run: (argv, opts) =>
      base.run(['nsenter', '--target', String(initPid), '--mount', '--pid', '--', ...argv], opts),
  };
}
