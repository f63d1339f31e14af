import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectAccelerator, type Accelerator, type AcceleratorChoice } from './accel.js';
import { QmpClient } from './client.js';
import { QemuConfigError, QemuStartError, QmpConnectTimeoutError } from './errors.js';
import { buildQemuArgs, type QemuGuestSpec } from './qemu-args.js';
import { chooseQemuBinary } from './qemu-binary.js';

export const DEFAULT_START_TIMEOUT_MS = 20_000;
export const DEFAULT_KILL_GRACE_MS = 3_000;
const STDERR_TAIL_BYTES = 8 * 1024;
const PIDFILE_TIMEOUT_MS = 5_000;

export interface StartQemuOptions extends QemuGuestSpec {
  /** `auto` (default) detects; `kvm`/`tcg` force. The CCM_QEMU_ACCEL env var also forces it. */
  accel?: Accelerator | 'auto';
  /** Start as a migration destination listening on this URI (e.g. `tcp:127.0.0.1:4444`). */
  incoming?: string;
  /** Directory for the QMP socket, pidfile and logs; a fresh temp dir (removed by kill/quit) when omitted. */
  runDir?: string;
  /** Serial console log; default `<runDir>/serial.log`. */
  serialLog?: string;
  pidfile?: string;
  qmpSocket?: string;
  /** Run QEMU inside this network namespace (`ip netns exec NAME`). */
  netns?: string;
  name?: string;
  /** QEMU binary; default {@link chooseQemuBinary}'s choice ($CCM_QEMU_BIN, CCM's trixie QEMU, PATH). */
  binary?: string;
  /** How long QEMU may take to open its QMP socket. */
  startTimeoutMs?: number;
  /** Default per-command timeout of the QMP client. */
  commandTimeoutMs?: number;
}

export interface QemuExit {
  code: number | null;
  signal: string | null;
}

export interface QemuPaths {
  runDir: string;
  qmpSocket: string;
  pidfile: string;
  serialLog: string;
  /** QEMU's stdout and stderr. */
  stderrLog: string;
}

/** A running QEMU with a negotiated QMP connection. */
export interface QemuProcess {
  /** QEMU's pid as written to its -pidfile (the one to signal, even behind a wrapper). */
  readonly pid: number;
  readonly name: string;
  readonly accel: AcceleratorChoice;
  readonly argv: readonly string[];
  readonly qmp: QmpClient;
  readonly paths: QemuPaths;
  /** Resolves when the QEMU process has exited. */
  readonly exited: Promise<QemuExit>;
  /** The exit status once exited, else undefined. */
  exitStatus(): QemuExit | undefined;
  /** The last few KiB of QEMU's stdout and stderr. */
  stderrTail(): string;
  /** Signals the pid (SIGTERM, then SIGKILL after `graceMs`) and waits for the exit. Safe to call twice. */
  kill(opts?: { signal?: NodeJS.Signals; graceMs?: number }): Promise<QemuExit>;
  /** Asks QEMU to `quit` over QMP, falling back to {@link QemuProcess.kill}. */
  quit(opts?: { graceMs?: number }): Promise<QemuExit>;
}

/** The QEMU binary to use, or undefined when none is installed (for skip decisions). */
export function findQemuBinary(binary = chooseQemuBinary().binary): string | undefined {
  if (binary.includes('/')) return existsSync(binary) ? binary : undefined;
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', binary], { encoding: 'utf8' });
  const found = r.stdout.trim();
  return r.status === 0 && found ? found : undefined;
}

class TailBuffer {
  private text = '';
  constructor(private readonly max: number) {}
  push(chunk: string): void {
    this.text += chunk;
    if (this.text.length > 2 * this.max) this.text = this.text.slice(-this.max);
  }
  get value(): string {
    return this.text.slice(-this.max);
  }
}

/**
 * Starts QEMU, waits until its QMP socket answers and capabilities are negotiated, and reads its pid
 * from the pidfile. If QEMU exits or the socket never appears, throws {@link QemuStartError} carrying
 * the tail of QEMU's stderr (and kills whatever is left).
 */
export async function startQemu(opts: StartQemuOptions): Promise<QemuProcess> {
  const accel: AcceleratorChoice =
    !opts.accel || opts.accel === 'auto'
      ? detectAccelerator()
      : { accel: opts.accel, reason: 'set by the caller' };
  const ownRunDir = !opts.runDir;
  const runDir = opts.runDir ?? (await mkdtemp(join(tmpdir(), 'ccm-qemu-')));
  await mkdir(runDir, { recursive: true });
  const name = opts.name ?? 'ccm-guest';
  const paths: QemuPaths = {
    runDir,
    qmpSocket: opts.qmpSocket ?? join(runDir, 'qmp.sock'),
    pidfile: opts.pidfile ?? join(runDir, 'qemu.pid'),
    serialLog: opts.serialLog ?? join(runDir, 'serial.log'),
    stderrLog: join(runDir, 'qemu.stderr.log'),
  };
  if (Buffer.byteLength(paths.qmpSocket) > 107) {
    throw new QemuConfigError(`QMP socket path is longer than a unix socket allows: ${paths.qmpSocket}`);
  }
  await Promise.all([rm(paths.qmpSocket, { force: true }), rm(paths.pidfile, { force: true })]);

  const binary = opts.binary ?? chooseQemuBinary().binary;
  const qemuArgs = buildQemuArgs(opts, accel.accel, paths, { name, incoming: opts.incoming });
  const argv = opts.netns ? ['ip', 'netns', 'exec', opts.netns, binary, ...qemuArgs] : [binary, ...qemuArgs];

  const tail = new TailBuffer(STDERR_TAIL_BYTES);
  const logFile = createWriteStream(paths.stderrLog);
  const [command, ...commandArgs] = argv as [string, ...string[]];
  const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const s of [child.stdout, child.stderr]) {
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      tail.push(d);
      logFile.write(d);
    });
  }

  let exitStatus: QemuExit | undefined;
  const startAbort = new AbortController();
  const exited = new Promise<QemuExit>((resolve) => {
    child.once('error', (err) => {
      exitStatus ??= { code: null, signal: null };
      startAbort.abort(
        new QemuStartError(`cannot run ${argv[0]}: ${err.message}`, null, null, tail.value, argv, {
          cause: err,
        }),
      );
      logFile.end();
      resolve(exitStatus);
    });
    // 'close' rather than 'exit': it fires after stdout/stderr drained, so the tail is complete.
    child.once('close', (code, signal) => {
      exitStatus ??= { code, signal };
      const detail = `exited (code ${code ?? 'none'}, signal ${signal ?? 'none'}) before QMP was ready`;
      startAbort.abort(new QemuStartError(detail, code, signal, tail.value, argv));
      logFile.end();
      resolve(exitStatus);
    });
  });

  const killChild = async (): Promise<void> => {
    if (!exitStatus) child.kill('SIGKILL');
    await exited;
  };

  let qmp: QmpClient;
  let pid: number;
  try {
    const startTimeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    qmp = await QmpClient.connect(paths.qmpSocket, {
      connectTimeoutMs: startTimeoutMs,
      signal: startAbort.signal,
      commandTimeoutMs: opts.commandTimeoutMs,
    }).catch((err: unknown) => {
      if (err instanceof QemuStartError) throw err;
      const detail =
        err instanceof QmpConnectTimeoutError
          ? `QMP socket ${paths.qmpSocket} did not answer within ${startTimeoutMs} ms`
          : `QMP handshake failed: ${(err as Error).message}`;
      throw new QemuStartError(detail, null, null, tail.value, argv, { cause: err });
    });
    pid = await readPidfile(paths.pidfile, startAbort.signal).catch(async (err: unknown) => {
      await qmp.close();
      throw err instanceof QemuStartError
        ? err
        : new QemuStartError(String(err), null, null, tail.value, argv);
    });
  } catch (err) {
    await killChild();
    if (ownRunDir) await rm(runDir, { recursive: true, force: true });
    throw err;
  }

  const kill = async ({
    signal = 'SIGTERM',
    graceMs = DEFAULT_KILL_GRACE_MS,
  }: { signal?: NodeJS.Signals; graceMs?: number } = {}): Promise<QemuExit> => {
    if (!exitStatus) {
      signalPid(pid, signal);
      const timer = setTimeout(() => signalPid(pid, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }
    await qmp.close();
    if (ownRunDir) await rm(runDir, { recursive: true, force: true });
    return exitStatus!;
  };

  return {
    pid,
    name,
    accel,
    argv,
    qmp,
    paths,
    exited,
    exitStatus: () => exitStatus,
    stderrTail: () => tail.value,
    kill,
    quit: async ({ graceMs = DEFAULT_KILL_GRACE_MS } = {}) => {
      if (!exitStatus) {
        await qmp.execute('quit', undefined, { timeoutMs: graceMs }).catch(() => undefined);
        const timer = setTimeout(() => signalPid(pid, 'SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      return kill();
    },
  };
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** QEMU writes its pidfile before it opens the QMP socket; poll briefly in case the filesystem lags. */
async function readPidfile(path: string, signal: AbortSignal): Promise<number> {
  const deadline = Date.now() + PIDFILE_TIMEOUT_MS;
  for (;;) {
    if (signal.aborted) throw signal.reason;
    const text = await readFile(path, 'utf8').catch(() => '');
    const pid = Number.parseInt(text.trim(), 10);
    if (Number.isInteger(pid) && pid > 0) return pid;
    if (Date.now() > deadline) throw new Error(`pidfile ${path} holds no pid after ${PIDFILE_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
