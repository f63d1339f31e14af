import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { absPathArg, containerIdArg, relPathArg, timeoutArg } from './args.js';
import { failure, CRIU_TIMEOUT_MS } from './criu.js';
import { CriuTimeoutError } from './errors.js';
import { type CriuLogRecord, diagnoseCriuLog, parseCriuLog } from './log.js';
import { type CommandRunner } from './runner.js';

export interface RuncOptions {
  readonly runner: CommandRunner;
  readonly binary?: string;
  /** runc's state root (`--root`). */
  readonly root?: string;
  readonly timeoutMs?: number;
  readonly hostPath?: (path: string) => string;
}

export interface RuncCheckpointOptions {
  readonly id: string;
  readonly imagePath: string;
  /** Where runc makes CRIU write its log (dump.log): the only place the real reason is. */
  readonly workPath: string;
  /** The previous pre-dump, relative to `imagePath`. */
  readonly parentPath?: string;
  readonly preDump?: boolean;
  readonly tcpEstablished?: boolean;
  readonly leaveRunning?: boolean;
}

export interface RuncRestoreOptions {
  readonly id: string;
  readonly bundle: string;
  readonly imagePath: string;
  readonly workPath: string;
  readonly tcpEstablished?: boolean;
  /** Needed where the root is an initramfs (FEASIBILITY §3.4). */
  readonly noPivot?: boolean;
}

/**
 * runc's checkpoint/restore and lifecycle verbs. On failure runc says only "criu failed"; the reason is
 * read from CRIU's log in the work path. The network lock of a runc checkpoint is CRIU's configured
 * default (runc has no flag for it).
 */
export class Runc {
  private readonly binary: string;
  private readonly timeoutMs: number;
  private readonly hostPath: (p: string) => string;
  constructor(private readonly opts: RuncOptions) {
    this.binary = opts.binary ?? 'runc';
    this.timeoutMs = timeoutArg(opts.timeoutMs ?? CRIU_TIMEOUT_MS);
    this.hostPath = opts.hostPath ?? ((p) => p);
  }

  private base(): string[] {
    return [this.binary, ...(this.opts.root ? ['--root', absPathArg('root', this.opts.root)] : [])];
  }

  checkpointArgs(o: RuncCheckpointOptions): string[] {
    return [
      ...this.base(),
      'checkpoint',
      '--image-path',
      absPathArg('imagePath', o.imagePath),
      '--work-path',
      absPathArg('workPath', o.workPath),
      ...(o.parentPath !== undefined ? ['--parent-path', relPathArg('parentPath', o.parentPath)] : []),
      ...(o.preDump ? ['--pre-dump'] : []),
      ...(o.tcpEstablished ? ['--tcp-established'] : []),
      ...(o.leaveRunning ? ['--leave-running'] : []),
      '--manage-cgroups-mode',
      'soft',
      containerIdArg('id', o.id),
    ];
  }

  restoreArgs(o: RuncRestoreOptions): string[] {
    return [
      ...this.base(),
      'restore',
      '--detach',
      '--image-path',
      absPathArg('imagePath', o.imagePath),
      '--work-path',
      absPathArg('workPath', o.workPath),
      '--bundle',
      absPathArg('bundle', o.bundle),
      ...(o.tcpEstablished ? ['--tcp-established'] : []),
      ...(o.noPivot ? ['--no-pivot'] : []),
      containerIdArg('id', o.id),
    ];
  }

  async checkpoint(o: RuncCheckpointOptions): Promise<void> {
    return this.criuVerb(o.preDump ? 'pre-dump' : 'dump', this.checkpointArgs(o), o.workPath);
  }

  async restore(o: RuncRestoreOptions): Promise<void> {
    return this.criuVerb('restore', this.restoreArgs(o), o.workPath);
  }

  /** Freeze (`pause`), thaw (`resume`), `kill` (SIGKILL) and `delete` of a container. */
  async lifecycle(verb: 'pause' | 'resume' | 'kill' | 'delete', id: string): Promise<void> {
    const argv = [...this.base(), verb, containerIdArg('id', id), ...(verb === 'kill' ? ['KILL'] : [])];
    const r = await this.opts.runner.run(argv, { timeoutMs: this.timeoutMs });
    if (r.timedOut) throw new CriuTimeoutError(`runc ${verb}`, this.timeoutMs, undefined);
    if (r.exitCode !== 0) throw failure(`runc ${verb}`, r, undefined);
  }

  private async criuVerb(
    action: 'pre-dump' | 'dump' | 'restore',
    argv: string[],
    workPath: string,
  ): Promise<void> {
    const r = await this.opts.runner.run(argv, { timeoutMs: this.timeoutMs });
    const logName = action === 'restore' ? 'restore.log' : 'dump.log';
    let log: CriuLogRecord[] | undefined;
    try {
      log = parseCriuLog(await readFile(this.hostPath(posix.join(workPath, logName)), 'utf8'));
    } catch {
      log = undefined;
    }
    if (r.timedOut)
      throw new CriuTimeoutError(`runc ${action}`, this.timeoutMs, log ? diagnoseCriuLog(log) : undefined);
    if (r.exitCode !== 0) throw failure(`runc ${action}`, r, log);
  }
}
