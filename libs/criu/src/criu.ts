import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { absPathArg, type NetworkLock, networkLockArg, pidArg, relPathArg, timeoutArg } from './args.js';
import { CriuCheckError, CriuFailedError, CriuTimeoutError } from './errors.js';
import { type CriuDiagnosis, type CriuLogRecord, diagnoseCriuLog, parseCriuLog } from './log.js';
import { type CommandRunner, type RunResult } from './runner.js';

/** Default deadline of one CRIU run. */
export const CRIU_TIMEOUT_MS = 120_000;

export interface CriuAdapterOptions {
  readonly runner: CommandRunner;
  /** The criu binary as the runner sees it. */
  readonly binary?: string;
  readonly timeoutMs?: number;
  /** Maps a path as CRIU sees it to where this process reads it (identity unless CRIU runs in a namespace). */
  readonly hostPath?: (path: string) => string;
}

export interface PreDumpOptions {
  readonly pid: number;
  readonly imagesDir: string;
  /** The previous round's images, relative to `imagesDir` (e.g. `../round-1`); absent in round 1. */
  readonly prevImagesDir?: string;
}

export interface DumpOptions extends PreDumpOptions {
  /** Dump established TCP connections (they survive a restore with the same flag). */
  readonly tcpEstablished: boolean;
  /** How CRIU keeps the network quiet while the task is frozen. */
  readonly networkLock: NetworkLock;
  /** Whether the memory-tracking pre-dumps ran (needed with `prevImagesDir`). */
  readonly trackMem?: boolean;
  /** Leave the task running after the dump (the images are a copy, not a move). */
  readonly leaveRunning?: boolean;
}

export interface RestoreOptions {
  readonly imagesDir: string;
  readonly tcpEstablished: boolean;
  readonly networkLock?: NetworkLock;
  /** Where CRIU writes the restored root task's pid (as CRIU sees the path). */
  readonly pidFile?: string;
  /** Restore the tasks stopped (not resumed) — resume later with SIGCONT. */
  readonly leaveStopped?: boolean;
}

/** What a successful run reports. */
export interface CriuRun {
  readonly action: string;
  readonly durationMs: number;
  readonly log: readonly CriuLogRecord[];
}

const LOG = { 'pre-dump': 'pre-dump.log', dump: 'dump.log', restore: 'restore.log' } as const;

/**
 * A typed adapter for the CRIU command line: argv built from checked fields only, a deadline on every
 * run, and failures diagnosed from CRIU's own log (its exit code and stderr say little).
 */
export class Criu {
  private readonly binary: string;
  private readonly timeoutMs: number;
  private readonly hostPath: (p: string) => string;

  constructor(private readonly opts: CriuAdapterOptions) {
    this.binary = opts.binary ?? 'criu';
    this.timeoutMs = timeoutArg(opts.timeoutMs ?? CRIU_TIMEOUT_MS);
    this.hostPath = opts.hostPath ?? ((p) => p);
  }

  /** `criu check`: throws {@link CriuCheckError} with every problem; CRIU may exit 0 while failing. */
  async check(): Promise<void> {
    const r = await this.opts.runner.run([this.binary, 'check'], { timeoutMs: this.timeoutMs });
    const out = `${r.stdout}\n${r.stderr}`;
    if (r.exitCode === 0 && /Looks good\./.test(out)) return;
    const problems = parseCriuLog(out)
      .filter((l) => l.level === 'error' || /^Error/.test(l.message))
      .map((l) => (l.source ? `${l.source}: ${l.message}` : l.message));
    throw new CriuCheckError(
      problems.length > 0 ? problems : [r.timedOut ? 'timed out' : `exit ${r.exitCode}`],
    );
  }

  /** Pre-dump with memory tracking: copies memory while the task runs; the next round sends only what changed. */
  async preDump(o: PreDumpOptions): Promise<CriuRun> {
    return this.execute('pre-dump', o.imagesDir, [
      'pre-dump',
      '-t',
      pidArg('pid', o.pid),
      '--track-mem',
      ...(o.prevImagesDir !== undefined
        ? ['--prev-images-dir', relPathArg('prevImagesDir', o.prevImagesDir)]
        : []),
    ]);
  }

  /** The final dump: freezes the task tree, writes the images and (unless leaveRunning) kills it. */
  async dump(o: DumpOptions): Promise<CriuRun> {
    return this.execute('dump', o.imagesDir, [
      'dump',
      '-t',
      pidArg('pid', o.pid),
      ...(o.trackMem || o.prevImagesDir !== undefined ? ['--track-mem'] : []),
      ...(o.prevImagesDir !== undefined
        ? ['--prev-images-dir', relPathArg('prevImagesDir', o.prevImagesDir)]
        : []),
      ...(o.tcpEstablished ? ['--tcp-established'] : []),
      '--network-lock',
      networkLockArg(o.networkLock),
      ...(o.leaveRunning ? ['--leave-running'] : []),
    ]);
  }

  /** Restores detached from the images in `imagesDir`. */
  async restore(o: RestoreOptions): Promise<CriuRun> {
    return this.execute('restore', o.imagesDir, [
      'restore',
      '-d',
      ...(o.tcpEstablished ? ['--tcp-established'] : []),
      ...(o.networkLock !== undefined ? ['--network-lock', networkLockArg(o.networkLock)] : []),
      ...(o.pidFile !== undefined ? ['--pidfile', absPathArg('pidFile', o.pidFile)] : []),
      ...(o.leaveStopped ? ['--leave-stopped'] : []),
    ]);
  }

  private async execute(action: keyof typeof LOG, imagesDir: string, args: string[]): Promise<CriuRun> {
    const dir = absPathArg('imagesDir', imagesDir);
    const argv = [this.binary, ...args, '-D', dir, '-o', LOG[action], '-v4'];
    const started = performance.now();
    const r = await this.opts.runner.run(argv, { timeoutMs: this.timeoutMs });
    const durationMs = performance.now() - started;
    const log = await this.readLog(posix.join(dir, LOG[action]));
    if (r.timedOut) {
      const diagnosis = log ? diagnoseCriuLog(log) : undefined;
      throw new CriuTimeoutError(
        action,
        this.timeoutMs,
        diagnosis?.record ? diagnosis : undefined,
        log?.at(-1),
      );
    }
    if (r.exitCode !== 0) throw failure(action, r, log);
    return { action, durationMs, log: log ?? [] };
  }

  private async readLog(path: string): Promise<CriuLogRecord[] | undefined> {
    try {
      return parseCriuLog(await readFile(this.hostPath(path), 'utf8'));
    } catch {
      return undefined;
    }
  }
}

/** The typed failure of a run, diagnosed from its log (or from stderr when it wrote none). */
export function failure(action: string, r: RunResult, log: CriuLogRecord[] | undefined): CriuFailedError {
  const diagnosis: CriuDiagnosis = diagnoseCriuLog(log ?? parseCriuLog(r.stderr));
  return new CriuFailedError(action, r.exitCode, diagnosis, r.stderr);
}
