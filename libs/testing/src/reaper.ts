import { spawn, type ChildProcess } from 'node:child_process';

/**
 * The reaper: a small process, in its own session, that kills what this process started when this
 * process dies, however it dies. Node has no prctl(PR_SET_PDEATHSIG), and its 'exit' hooks do not run on
 * SIGKILL nor on a SIGTERM nobody handles (a test worker stopped by its runner); the kernel still closes
 * the reaper's stdin pipe then. Each line on that pipe registers (`+pid` or `+-pgid`) or forgets (`-…`)
 * a target; at end of input the reaper SIGKILLs every target still registered and exits. A target is
 * forgotten when it exits, so the reaper never signals a pid that was stopped normally (and reused).
 */
const REAPER = `
const targets = new Set();
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    const target = Number(line.slice(1));
    if (!Number.isInteger(target) || target === 0) continue;
    if (line[0] === '+') targets.add(target);
    else if (line[0] === '-') targets.delete(target);
  }
});
const reap = () => {
  for (const t of targets) {
    try { process.kill(t, 'SIGKILL'); } catch {}
  }
  process.exit(0);
};
process.stdin.on('end', reap);
process.stdin.on('close', reap);
process.stdin.on('error', reap);
process.on('SIGINT', () => undefined);
process.on('SIGHUP', () => undefined);
`;

let reaper: ChildProcess | undefined;

function send(line: string): void {
  if (!reaper) {
    reaper = spawn(process.execPath, ['-e', REAPER], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    reaper.unref();
    const stdin = reaper.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null;
    stdin?.unref?.();
    stdin?.on('error', () => undefined);
  }
  reaper.stdin?.write(`${line}\n`);
}

/**
 * Kills `child` (its whole process group when it was spawned detached) if this process dies before the
 * child exits. Returns nothing to undo: the registration is dropped when the child exits.
 */
export function reapWithParent(child: ChildProcess, opts: { group: boolean }): void {
  const pid = child.pid;
  if (pid === undefined) return;
  const target = opts.group ? -pid : pid;
  send(`+${target}`);
  child.once('exit', () => send(`-${target}`));
}
