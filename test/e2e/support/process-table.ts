import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';

/** A live process (zombies excluded: nothing may reap orphans on this host) and its command line. */
export interface ProcessEntry {
  pid: number;
  cmdline: string;
}

async function entry(pid: number): Promise<{ stat: string; env: string; cmdline: string } | undefined> {
  try {
    const [stat, env, cmdline] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'utf8'),
      readFile(`/proc/${pid}/environ`, 'utf8'),
      readFile(`/proc/${pid}/cmdline`, 'utf8'),
    ]);
    return { stat, env, cmdline: cmdline.split('\0').join(' ').trim() };
  } catch {
    return undefined; // gone meanwhile, or a kernel thread
  }
}

/**
 * Every live process that carries `CCM_RUN_TAG=<tag>` in its environment (inherited from the process a
 * test started) or names `dir` on its command line (a server started with its data dir there): what
 * a tool left behind after it exited.
 */
export async function processesOf(tag: string, dir: string): Promise<ProcessEntry[]> {
  const found: ProcessEntry[] = [];
  for (const name of await readdir('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const e = await entry(pid);
    if (!e) continue;
    const state = e.stat.slice(e.stat.lastIndexOf(')') + 2).split(' ')[0];
    if (state === 'Z') continue;
    if (e.env.split('\0').includes(`CCM_RUN_TAG=${tag}`) || e.cmdline.includes(dir)) {
      found.push({ pid, cmdline: e.cmdline.slice(0, 160) });
    }
  }
  return found;
}

/**
 * What is still running of a run after a short grace: a helper that ends when its parent ends (the
 * test reaper of libs/testing, which notices its parent's exit through a closed pipe) may outlive the
 * parent by a few milliseconds. Polls until nothing is left or `graceMs` passed, and returns what is left.
 */
export async function processesLeft(tag: string, dir: string, graceMs = 5_000): Promise<ProcessEntry[]> {
  const deadline = Date.now() + graceMs;
  for (;;) {
    const left = await processesOf(tag, dir);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface ToolRun {
  pid: number;
  out: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs a built tool (node) with `CCM_RUN_TAG=<tag>`, collecting stdout and stderr together. */
export function runTool(script: string, args: string[], tag: string): ToolRun {
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CCM_RUN_TAG: tag },
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  return { pid: child.pid!, out: () => out, exited };
}
