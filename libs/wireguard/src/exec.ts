import { spawn } from 'node:child_process';
import { WgCommandFailedError, WgTimeoutError, WgToolMissingError } from './errors.js';
import { netnsName } from './validate.js';

/** Default bound on one `wg`/`ip` invocation. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;

export interface RunOptions {
  /** Run inside this network namespace (`ip netns exec <ns> …`). */
  readonly netns?: string;
  /** Written to the command's stdin (keys travel this way, never in argv). */
  readonly stdin?: string;
  readonly timeoutMs?: number;
}

/** `argv` as it runs, inside `netns` when one is given. */
export function inNetns(argv: readonly string[], netns?: string): string[] {
  return netns === undefined ? [...argv] : ['ip', 'netns', 'exec', netnsName(netns), ...argv];
}

/**
 * Runs one command from an argv array (never a shell string) and returns its stdout.
 * @throws WgToolMissingError, WgCommandFailedError, WgTimeoutError (the process is killed).
 */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const full = inNetns(argv, opts.netns);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const child = spawn(full[0], full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new WgTimeoutError(full.join(' '), timeoutMs));
    }, timeoutMs);
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(err.code === 'ENOENT' ? new WgToolMissingError(full[0], { cause: err }) : err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new WgCommandFailedError(full, code, stderr));
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.stdin ?? '');
  });
}
