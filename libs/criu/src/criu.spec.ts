import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pollUntil } from '@ccm/testing';
import { describe, expect, it } from 'vitest';
import { Criu } from './criu.js';
import { CriuCheckError, CriuFailedError, CriuInvalidArgumentError, CriuTimeoutError } from './errors.js';
import { Runc } from './runc.js';
import { type CommandRunner, type RunResult } from './runner.js';

/** A runner that records argv and answers as told (unit tests of argv building only). */
function recorder(result: Partial<RunResult> = {}) {
  const calls: string[][] = [];
  const runner: CommandRunner = {
    run: (argv) => {
      calls.push([...argv]);
      return Promise.resolve({
        exitCode: 0,
        signal: null,
        stdout: '',
        stderr: '',
        timedOut: false,
        ...result,
      });
    },
  };
  return { calls, runner };
}

describe('Criu argv', () => {
  it('pre-dump round 2 tracks memory against the previous round', async () => {
    const { calls, runner } = recorder();
    await new Criu({ runner }).preDump({ pid: 42, imagesDir: '/img/round-2', prevImagesDir: '../round-1' });
    expect(calls[0]).toEqual([
      'criu',
      'pre-dump',
      '-t',
      '42',
      '--track-mem',
      '--prev-images-dir',
      '../round-1',
      '-D',
      '/img/round-2',
      '-o',
      'pre-dump.log',
      '-v4',
    ]);
  });

  it('final dump with tcp-established and the network lock chosen', async () => {
    const { calls, runner } = recorder();
    await new Criu({ runner }).dump({
      pid: 42,
      imagesDir: '/img/final',
      prevImagesDir: '../round-2',
      tcpEstablished: true,
      networkLock: 'nftables',
    });
    expect(calls[0]).toEqual([
      'criu',
      'dump',
      '-t',
      '42',
      '--track-mem',
      '--prev-images-dir',
      '../round-2',
      '--tcp-established',
      '--network-lock',
      'nftables',
      '-D',
      '/img/final',
      '-o',
      'dump.log',
      '-v4',
    ]);
  });

  it('restore detached, stopped, with a pid file', async () => {
    const { calls, runner } = recorder();
    await new Criu({ runner }).restore({
      imagesDir: '/img/final',
      tcpEstablished: true,
      pidFile: '/run/p',
      leaveStopped: true,
    });
    expect(calls[0]).toEqual([
      'criu',
      'restore',
      '-d',
      '--tcp-established',
      '--pidfile',
      '/run/p',
      '--leave-stopped',
      '-D',
      '/img/final',
      '-o',
      'restore.log',
      '-v4',
    ]);
  });

  it.each([
    ['a pid that is not an integer', { pid: '42; rm -rf /', imagesDir: '/img' }, 'pid'],
    ['a negative pid', { pid: -1, imagesDir: '/img' }, 'pid'],
    ['a relative images dir', { pid: 1, imagesDir: 'img' }, 'imagesDir'],
    ['an images dir with ..', { pid: 1, imagesDir: '/img/../etc' }, 'imagesDir'],
    ['an images dir that reads as an option', { pid: 1, imagesDir: '--exec-cmd' }, 'imagesDir'],
    ['a NUL in a path', { pid: 1, imagesDir: '/img\0x' }, 'imagesDir'],
    ['an absolute prev dir', { pid: 1, imagesDir: '/img/2', prevImagesDir: '/img/1' }, 'prevImagesDir'],
  ])('refuses %s before running anything', async (_what, o, field) => {
    const { calls, runner } = recorder();
    const err = await new Criu({ runner }).preDump(o as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CriuInvalidArgumentError);
    expect((err as CriuInvalidArgumentError).field).toBe(field);
    expect(calls).toHaveLength(0);
  });

  it('refuses an unknown network lock', async () => {
    const { runner } = recorder();
    await expect(
      new Criu({ runner }).dump({
        pid: 1,
        imagesDir: '/i',
        tcpEstablished: false,
        networkLock: 'none' as never,
      }),
    ).rejects.toThrow(CriuInvalidArgumentError);
  });

  it('a non-zero exit is a CriuFailedError, diagnosed from stderr when no log was written', async () => {
    const { runner } = recorder({ exitCode: 1, stderr: '(00.1) Error (criu/x.c:1): pid 7 is busy\n' });
    const err = await new Criu({ runner })
      .restore({ imagesDir: '/nonexistent', tcpEstablished: false })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CriuFailedError);
    expect((err as CriuFailedError).diagnosis.reason).toBe('PID_IN_USE');
  });

  it('a run past its deadline is a retryable CriuTimeoutError', async () => {
    const { runner } = recorder({ exitCode: null, signal: 'SIGKILL', timedOut: true });
    const err = await new Criu({ runner, timeoutMs: 5 })
      .dump({ pid: 1, imagesDir: '/i', tcpEstablished: false, networkLock: 'skip' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CriuTimeoutError);
    expect((err as CriuTimeoutError).retryable).toBe(true);
  });

  it('check passes only on "Looks good." and lists every problem otherwise, even with exit 0', async () => {
    await new Criu({ runner: recorder({ stdout: 'Looks good.\n' }).runner }).check();
    const vdso = [
      'Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds',
      'Error (criu/crtools.c:260): Could not initialize kernel features detection.',
    ].join('\n');
    const err = await new Criu({ runner: recorder({ stderr: vdso }).runner })
      .check()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CriuCheckError);
    expect((err as CriuCheckError).problems).toHaveLength(2);
  });
});

describe('Runc argv', () => {
  const runc = new Runc({ runner: recorder().runner, root: '/run/ccm/runc' });
  it('pre-dump checkpoint with a parent', () => {
    expect(
      runc.checkpointArgs({
        id: 'web-1',
        imagePath: '/img/2',
        workPath: '/work/2',
        parentPath: '../1',
        preDump: true,
      }),
    ).toEqual([
      'runc',
      '--root',
      '/run/ccm/runc',
      'checkpoint',
      '--image-path',
      '/img/2',
      '--work-path',
      '/work/2',
      '--parent-path',
      '../1',
      '--pre-dump',
      '--manage-cgroups-mode',
      'soft',
      'web-1',
    ]);
  });
  it('restore detached', () => {
    expect(
      runc.restoreArgs({
        id: 'web-1',
        bundle: '/b',
        imagePath: '/img',
        workPath: '/w',
        tcpEstablished: true,
        noPivot: true,
      }),
    ).toEqual([
      'runc',
      '--root',
      '/run/ccm/runc',
      'restore',
      '--detach',
      '--image-path',
      '/img',
      '--work-path',
      '/w',
      '--bundle',
      '/b',
      '--tcp-established',
      '--no-pivot',
      'web-1',
    ]);
  });
  it('run: detached, with its log, stdio /dev/null (the container inherits it)', async () => {
    const calls: Array<{ argv: string[]; stdio?: string }> = [];
    const runner: CommandRunner = {
      run: (argv, o) => {
        calls.push({ argv: [...argv], stdio: o.stdio });
        return Promise.resolve({ exitCode: 0, signal: null, stdout: '', stderr: '', timedOut: false });
      },
    };
    await new Runc({ runner, root: '/r', log: '/r/runc.log' }).run('c1', '/b/c1');
    expect(calls).toEqual([
      {
        argv: ['runc', '--root', '/r', '--log', '/r/runc.log', 'run', '--detach', '--bundle', '/b/c1', 'c1'],
        stdio: 'ignore',
      },
    ]);
  });
  it('state: the status and pid runc reports; undefined for a container runc does not know', async () => {
    const known = recorder({ stdout: JSON.stringify({ id: 'c1', status: 'paused', pid: 77, bundle: '/b' }) });
    expect(await new Runc({ runner: known.runner }).state('c1')).toEqual({
      id: 'c1',
      status: 'paused',
      pid: 77,
      bundle: '/b',
    });
    expect(known.calls[0]).toEqual(['runc', 'state', 'c1']);
    expect(await new Runc({ runner: recorder({ exitCode: 1 }).runner }).state('c1')).toBeUndefined();
  });
  it("initPid: the init runc's state file names while that very process lives, without spawning runc", async () => {
    const root = await mkdtemp(join(tmpdir(), 'ccm-runc-state-'));
    try {
      const stat = await readFile('/proc/self/stat', 'utf8');
      const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
      const write = async (id: string, s: Record<string, unknown>) => {
        await mkdir(join(root, id), { recursive: true });
        await writeFile(join(root, id, 'state.json'), JSON.stringify(s));
      };
      await write('live', { id: 'live', init_process_pid: process.pid, init_process_start: start });
      // The pid reused by another process (another start time): runc says stopped.
      await write('reused', { id: 'reused', init_process_pid: process.pid, init_process_start: start + 1 });
      await write('gone', { id: 'gone', init_process_pid: 2 ** 22 + 1, init_process_start: start });
      await write('odd', { id: 'odd', init_process_pid: 'x' });
      const r = recorder({ stdout: JSON.stringify({ id: 'odd', status: 'running', pid: 77, bundle: '/b' }) });
      const runc = new Runc({ runner: r.runner, root });
      expect(await runc.initPid('live')).toBe(process.pid);
      expect(await runc.initPid('reused')).toBe(0);
      expect(await runc.initPid('gone')).toBe(0);
      expect(r.calls).toEqual([]);
      // A file it does not understand, or none: runc state decides.
      expect(await runc.initPid('odd')).toBe(77);
      expect(await runc.initPid('missing')).toBe(77);
      expect(r.calls).toEqual([
        ['runc', '--root', root, 'state', 'odd'],
        ['runc', '--root', root, 'state', 'missing'],
      ]);
      const unknown = new Runc({ runner: recorder({ exitCode: 1 }).runner, root });
      expect(await unknown.initPid('missing')).toBeUndefined();
      // runc in other namespaces (hostPath): its pids are not this process's, always runc state.
      const ns = recorder({ exitCode: 1 });
      expect(await new Runc({ runner: ns.runner, root, hostPath: (p) => p }).initPid('live')).toBeUndefined();
      expect(ns.calls).toHaveLength(1);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
  it('pause and continue of a live container with a cgroup v2 directory: through its cgroup, without runc', async () => {
    const root = await mkdtemp(join(tmpdir(), 'ccm-runc-cgroup-'));
    const cg = join(root, 'cg');
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      const stat = await readFile('/proc/self/stat', 'utf8');
      const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
      await mkdir(join(root, 'c1'), { recursive: true });
      await mkdir(join(cg, 'sub'), { recursive: true });
      await writeFile(
        join(root, 'c1', 'state.json'),
        JSON.stringify({
          init_process_pid: process.pid,
          init_process_start: start,
          cgroup_paths: { '': cg },
        }),
      );
      await writeFile(join(cg, 'cgroup.events'), 'populated 1\nfrozen 1\n');
      await writeFile(join(cg, 'cgroup.procs'), '');
      await writeFile(join(cg, 'sub', 'cgroup.procs'), `${child.pid}\n`);
      const r = recorder();
      const runc = new Runc({ runner: r.runner, root });
      await runc.lifecycle('pause', 'c1');
      expect(await readFile(join(cg, 'cgroup.freeze'), 'utf8')).toBe('1');
      // A stopped task (as a restore leaves them) in a child cgroup gets SIGCONT.
      child.kill('SIGSTOP');
      const state = async () => {
        const s = await readFile(`/proc/${child.pid}/stat`, 'utf8');
        return s.slice(s.lastIndexOf(')') + 2)[0];
      };
      await pollUntil('sleep stopped', state, (s) => s === 'T', { timeoutMs: 5000, intervalMs: 10 });
      await runc.lifecycle('continue', 'c1');
      await pollUntil('sleep continued', state, (s) => s !== 'T', { timeoutMs: 5000, intervalMs: 10 });
      expect(r.calls).toEqual([]);
      // No cgroup v2 directory in the state file: runc does it.
      await writeFile(
        join(root, 'c1', 'state.json'),
        JSON.stringify({ init_process_pid: process.pid, init_process_start: start, cgroup_paths: {} }),
      );
      await runc.lifecycle('pause', 'c1');
      expect(r.calls).toEqual([['runc', '--root', root, 'pause', 'c1']]);
    } finally {
      child.kill('SIGKILL');
      await rm(root, { recursive: true, force: true });
    }
  });
  it.each<[Parameters<Runc['lifecycle']>[0], string[]]>([
    ['pause', ['pause', 'c1']],
    ['kill', ['kill', 'c1', 'KILL']],
    ['continue', ['kill', '--all', 'c1', 'CONT']],
    ['delete-force', ['delete', '--force', 'c1']],
  ])('lifecycle %s', async (verb, argv) => {
    const r = recorder();
    await new Runc({ runner: r.runner }).lifecycle(verb, 'c1');
    expect(r.calls[0]).toEqual(['runc', ...argv]);
  });
  it.each(['-rf', '../x', 'a b', '', 'x'.repeat(129)])('refuses container id %j', (id) => {
    expect(() => runc.checkpointArgs({ id, imagePath: '/i', workPath: '/w' })).toThrow(
      CriuInvalidArgumentError,
    );
  });
});
