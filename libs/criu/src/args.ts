import { isAbsolute, posix } from 'node:path';
import { CriuInvalidArgumentError } from './errors.js';

/** Checks that turn caller input into argv elements that can only mean what they say. */

const MAX_PID = 4_194_304;

export function pidArg(field: string, pid: unknown): string {
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid < 1 || pid > MAX_PID) {
    throw new CriuInvalidArgumentError(field, `must be an integer in 1..${MAX_PID}`);
  }
  return String(pid);
}

function pathProblem(p: unknown): string | undefined {
  if (typeof p !== 'string' || p.length === 0) return 'must be a non-empty string';
  if (p.length > 4096) return 'is longer than 4096 characters';
  if (p.includes('\0') || /[\n\r]/.test(p)) return 'contains NUL or a line break';
  if (p.startsWith('-')) return 'starts with "-"';
  return undefined;
}

/** An absolute path with no `..` segment. */
export function absPathArg(field: string, p: unknown): string {
  const problem = pathProblem(p);
  if (problem) throw new CriuInvalidArgumentError(field, problem);
  const s = p as string;
  if (!isAbsolute(s)) throw new CriuInvalidArgumentError(field, 'must be an absolute path');
  if (s.split('/').includes('..')) throw new CriuInvalidArgumentError(field, 'must not contain ".."');
  return posix.normalize(s);
}

/** A path relative to another (CRIU's --prev-images-dir and runc's --parent-path are relative to -D). */
export function relPathArg(field: string, p: unknown): string {
  const problem = pathProblem(p);
  if (problem) throw new CriuInvalidArgumentError(field, problem);
  if (isAbsolute(p as string))
    throw new CriuInvalidArgumentError(field, 'must be relative to the images dir');
  return p as string;
}

/** A runc container id: what runc itself accepts, and nothing that could read as an option. */
export function containerIdArg(field: string, id: unknown): string {
  if (typeof id !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id)) {
    throw new CriuInvalidArgumentError(
      field,
      'must be 1..128 of letters, digits, "_", "." and "-", not starting with a symbol',
    );
  }
  return id;
}

export const NETWORK_LOCKS = ['iptables', 'nftables', 'skip'] as const;
export type NetworkLock = (typeof NETWORK_LOCKS)[number];

export function networkLockArg(lock: unknown): NetworkLock {
  if (!NETWORK_LOCKS.includes(lock as NetworkLock)) {
    throw new CriuInvalidArgumentError('networkLock', `must be one of ${NETWORK_LOCKS.join(', ')}`);
  }
  return lock as NetworkLock;
}

export function timeoutArg(ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 1 || ms > 3_600_000) {
    throw new CriuInvalidArgumentError('timeoutMs', 'must be an integer in 1..3600000');
  }
  return ms;
}
