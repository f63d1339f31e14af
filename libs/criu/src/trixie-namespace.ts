import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type CommandRunner, nsenterRunner } from './runner.js';

/**
 * A private mount + PID namespace pivoted into the cached trixie rootfs, where CRIU 4 works on this
 * host (tools/criu/trixie-ns.sh, FEASIBILITY §3.2). For tests and benchmarks of the adapter on a host
 * without a guest: `runner` runs argv inside; `workDir` is the namespace's `/mnt`. `close()` SIGKILLs
 * the namespace's init, which ends every process in it.
 */
export interface TrixieNamespace {
  readonly runner: CommandRunner;
  /** The host pid of the namespace's init. */
  readonly initPid: number;
  readonly workDir: string;
  /** A path inside the namespace as the host sees it (`/mnt/x` → `<workDir>/x`). */
  hostPath(p: string): string;
  close(): void;
}

/** Why CRIU cannot run here, or undefined when it can. */
export function trixieNamespaceUnavailable(repoRoot: string): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (unshare, pivot_root, CRIU)';
  const r = spawnSync('bash', [join(repoRoot, 'tools/trixie/rootfs.sh'), '--check'], { encoding: 'utf8' });
  if (r.status !== 0) return 'the trixie rootfs is not built (bash tools/trixie/rootfs.sh)';
  if (!existsSync(join(r.stdout.trim(), 'usr/sbin/criu'))) return 'the trixie rootfs has no criu';
  return undefined;
}

export async function openTrixieNamespace(
  repoRoot: string,
  workDir: string,
  timeoutMs = 20_000,
): Promise<TrixieNamespace> {
  const rootfs = spawnSync('bash', [join(repoRoot, 'tools/trixie/rootfs.sh'), '--check'], {
    encoding: 'utf8',
  }).stdout.trim();
  const holder = spawn('bash', [join(repoRoot, 'tools/criu/trixie-ns.sh'), rootfs, resolve(workDir)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  holder.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const deadline = Date.now() + timeoutMs;
  let initPid: number | undefined;
  while (initPid === undefined) {
    if (holder.exitCode !== null) throw new Error(`trixie-ns.sh exited ${holder.exitCode}: ${stderr.trim()}`);
    if (Date.now() > deadline) {
      holder.kill('SIGKILL');
      throw new Error(`the trixie namespace was not ready within ${timeoutMs} ms: ${stderr.trim()}`);
    }
    const child = childOf(holder.pid);
    if (child && existsSync(join(workDir, '.ns-ready'))) initPid = child;
    else await new Promise((r) => setTimeout(r, 20));
  }
  const pid = initPid;
  return {
    runner: nsenterRunner(pid),
    initPid: pid,
    workDir,
    hostPath: (p) => (p.startsWith('/mnt/') ? join(workDir, p.slice('/mnt/'.length)) : p),
    close: () => {
      for (const p of [pid, holder.pid]) {
        try {
          if (p) process.kill(p, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    },
  };
}

function childOf(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const first = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0];
    return first ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}
