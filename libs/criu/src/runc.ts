import { readdir, readFile, writeFile } from 'node:fs/promises';
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
  /**
   * runc's own log (`--log`, JSON lines). A detached run or restore gives runc no stderr to read
   * (its stdio becomes the container's), so its failures are read from here.
   */
  readonly log?: string;
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

/** What `runc state` says of a container. */
export interface RuncState {
  readonly id: string;
  /** `created`, `running`, `paused` or `stopped`. */
  readonly status: string;
  /** The container's init process as this pid namespace sees it (0 when stopped). */
  readonly pid: number;
  readonly bundle: string;
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
    return [
      this.binary,
      ...(this.opts.root ? ['--root', absPathArg('root', this.opts.root)] : []),
      ...(this.opts.log ? ['--log', absPathArg('log', this.opts.log)] : []),
    ];
  }

  runArgs(id: string, bundle: string): string[] {
    return [
      ...this.base(),
      'run',
      '--detach',
      '--bundle',
      absPathArg('bundle', bundle),
      containerIdArg('id', id),
    ];
  }

  /** Starts the bundle detached, its stdio /dev/null (a container CRIU can dump). */
  async run(id: string, bundle: string): Promise<void> {
    const r = await this.opts.runner.run(this.runArgs(id, bundle), {
      timeoutMs: this.timeoutMs,
      stdio: 'ignore',
    });
    if (r.timedOut) throw new CriuTimeoutError('runc run', this.timeoutMs, undefined);
    if (r.exitCode !== 0) throw failure('runc run', { ...r, stderr: await this.logTail() }, undefined);
  }

  /** `runc state`; undefined when runc does not know the container. */
  async state(id: string): Promise<RuncState | undefined> {
    const r = await this.opts.runner.run([...this.base(), 'state', containerIdArg('id', id)], {
      timeoutMs: this.timeoutMs,
    });
    if (r.timedOut) throw new CriuTimeoutError('runc state', this.timeoutMs, undefined);
    if (r.exitCode !== 0) return undefined;
    const s = JSON.parse(r.stdout) as Partial<RuncState>;
    return { id, status: String(s.status), pid: Number(s.pid ?? 0), bundle: String(s.bundle ?? '') };
  }

  /**
   * The container's init process as `runc state` decides it, without spawning runc (0.1–0.2 s a call
   * under TCG): runc's own state file (`<root>/<id>/state.json`, the init's pid and start time) and
   * `/proc/<pid>/stat` (the same process: the same start time, neither zombie nor dead), as runc
   * itself checks them. Its pid; 0 when the container is stopped (its init is gone); undefined when
   * runc knows no such container. Falls back to `runc state` where the state file does not tell
   * ({@link stateFile}).
   */
  async initPid(id: string): Promise<number | undefined> {
    const file = await this.stateFile(id);
    if (file !== undefined) return file.alive ? file.pid : 0;
    return (await this.state(id))?.pid;
  }

  /**
   * What runc's state file (`<root>/<id>/state.json`) says that {@link initPid}, `pause` and
   * `continue` need: the init's pid and whether that very process lives (as runc checks it: the start
   * time the file holds, neither zombie nor dead), and the container's cgroup v2 directory if it
   * names one. Undefined when the file does not tell (missing, another form), and always when runc
   * runs in other namespaces than this process (`hostPath` given: its pids and paths are not ours).
   */
  private async stateFile(id: string): Promise<{ pid: number; alive: boolean; cgroup?: string } | undefined> {
    if (this.opts.hostPath) return undefined;
    const file = posix.join(this.opts.root ?? '/run/runc', containerIdArg('id', id), 'state.json');
    let s: Record<string, unknown>;
    try {
      s = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    } catch {
      return undefined;
    }
    const pid = s['init_process_pid'];
    const start = s['init_process_start'];
    if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0 || !Number.isSafeInteger(start))
      return undefined;
    const paths = s['cgroup_paths'];
    const v2 = paths && typeof paths === 'object' ? (paths as Record<string, unknown>)[''] : undefined;
    const cgroup = typeof v2 === 'string' && posix.isAbsolute(v2) ? { cgroup: v2 } : {};
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined) return { pid, alive: false, ...cgroup };
    // After the command name (which may hold spaces and parentheses): state, then field 22 is 19 on.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const alive = !['Z', 'X', 'x'].includes(rest[0] ?? '') && Number(rest[19]) === start;
    return { pid, alive, ...cgroup };
  }

  private async logTail(): Promise<string> {
    if (!this.opts.log) return '';
    try {
      return (await readFile(this.hostPath(this.opts.log), 'utf8')).split('\n').slice(-6).join('\n');
    } catch {
      return '';
    }
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

  /** Restores detached; runc's stdio (the container's after the restore) is /dev/null. */
  async restore(o: RuncRestoreOptions): Promise<void> {
    return this.criuVerb('restore', this.restoreArgs(o), o.workPath, 'ignore');
  }

  /**
   * Freeze (`pause`), thaw (`resume`), `kill` (SIGKILL), `continue` (SIGCONT to every process: tasks a
   * restore left stopped), `delete` and `delete --force` (kills a running or paused container and
   * removes it) of a container.
   */
  async lifecycle(
    verb: 'pause' | 'resume' | 'kill' | 'continue' | 'delete' | 'delete-force',
    id: string,
  ): Promise<void> {
    if ((verb === 'pause' || verb === 'continue') && (await this.throughCgroup(verb, id))) return;
    const head = { 'delete-force': ['delete', '--force'], continue: ['kill', '--all'] } as Record<
      string,
      string[]
    >;
    const argv = [
      ...this.base(),
      ...(head[verb] ?? [verb]),
      containerIdArg('id', id),
      ...(verb === 'kill' ? ['KILL'] : verb === 'continue' ? ['CONT'] : []),
    ];
    const r = await this.opts.runner.run(argv, { timeoutMs: this.timeoutMs });
    if (r.timedOut) throw new CriuTimeoutError(`runc ${verb}`, this.timeoutMs, undefined);
    if (r.exitCode !== 0) throw failure(`runc ${verb}`, r, undefined);
  }

  /**
   * `pause` and `continue` of a live container with a cgroup v2 directory, done as runc does them but
   * without spawning runc (0.1–0.2 s a call under TCG). `pause`: `1` into `cgroup.freeze`, then wait
   * for `frozen 1` in `cgroup.events` (runc derives `paused` from the cgroup, so `runc state`, `runc
   * checkpoint` and `runc resume` see it paused). `continue`: SIGCONT to every process of the cgroup
   * and its children (runc freezes around its signals against forks; the tasks a restore left stopped
   * cannot fork). False when it did nothing (the state file does not tell, the init does not live, no
   * cgroup v2 directory, the cgroup's files cannot be opened): then runc does it.
   */
  private async throughCgroup(verb: 'pause' | 'continue', id: string): Promise<boolean> {
    const s = await this.stateFile(id);
    if (!s?.alive || !s.cgroup) return false;
    if (verb === 'continue') {
      const pids = await cgroupPids(s.cgroup).catch(() => undefined);
      if (!pids?.length) return false;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch (e) {
          // A process that ended between the list and the signal needs none.
          if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
        }
      }
      return true;
    }
    try {
      await writeFile(posix.join(s.cgroup, 'cgroup.freeze'), '1');
    } catch {
      return false;
    }
    const deadline = performance.now() + this.timeoutMs;
    while (!/^frozen 1$/m.test(await readFile(posix.join(s.cgroup, 'cgroup.events'), 'utf8'))) {
      if (performance.now() > deadline) throw new CriuTimeoutError('runc pause', this.timeoutMs, undefined);
      await new Promise((r) => setTimeout(r, 2));
    }
    return true;
  }

  private async criuVerb(
    action: 'pre-dump' | 'dump' | 'restore',
    argv: string[],
    workPath: string,
    stdio: 'pipe' | 'ignore' = 'pipe',
  ): Promise<void> {
    const r = await this.opts.runner.run(argv, { timeoutMs: this.timeoutMs, stdio });
    const logName = action === 'restore' ? 'restore.log' : 'dump.log';
    let log: CriuLogRecord[] | undefined;
    try {
      log = parseCriuLog(await readFile(this.hostPath(posix.join(workPath, logName)), 'utf8'));
    } catch {
      log = undefined;
    }
    if (r.timedOut)
      throw new CriuTimeoutError(`runc ${action}`, this.timeoutMs, log ? diagnoseCriuLog(log) : undefined);
    if (r.exitCode !== 0)
      throw failure(`runc ${action}`, stdio === 'ignore' ? { ...r, stderr: await this.logTail() } : r, log);
  }
}

/** The pids in a cgroup v2 directory and its descendants. */
async function cgroupPids(dir: string): Promise<number[]> {
  const own = (await readFile(posix.join(dir, 'cgroup.procs'), 'utf8'))
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map(Number);
  const subs = (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory());
  const nested = await Promise.all(subs.map((d) => cgroupPids(posix.join(dir, d.name))));
  return [...own, ...nested.flat()];
}
