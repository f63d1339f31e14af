import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * shared/vectors: the nearest ancestor of `from` that has `shared/vectors` (beside the repository root,
 * or beside the directory holding a git worktree of it). Test-only.
 */
export function findVectorsDir(from: string): string {
  for (let dir = from; dirname(dir) !== dir; dir = dirname(dir)) {
    const candidate = join(dir, 'shared', 'vectors');
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`no shared/vectors above ${from}`);
}
