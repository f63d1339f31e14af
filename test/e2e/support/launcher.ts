import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { pollUntil, REPO_ROOT } from '@ccm/testing';

/** The stack launcher run as an operator runs it: its own process group, output collected. */
export interface Launcher {
  child: ChildProcess;
  output(): string;
  exitCode(): number | null | undefined;
  /** Waits for the launcher's `running` line (it fails at once if the launcher exits first). */
  running(): Promise<void>;
  exited(timeoutMs?: number): Promise<number | null>;
}

/** `tag` goes into its environment as CCM_RUN_TAG, so `processesOf(tag, state)` finds all it started. */
export function startLauncher(state: string, tag: string, args: string[] = []): Launcher {
  const child = spawn(
    process.execPath,
    [join(REPO_ROOT, 'dist/tools/stack/main.js'), '--state', state, ...args],
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CCM_RUN_TAG: tag } },
  );
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  let code: number | null | undefined;
  child.on('exit', (c) => (code = c));
  return {
    child,
    output: () => out,
    exitCode: () => code,
    running: async () => {
      await pollUntil(
        'the stack running',
        () => out.includes('Ctrl-C stops everything') || code !== undefined,
        Boolean,
        {
          timeoutMs: 120_000,
        },
      );
      if (code !== undefined) throw new Error(`the launcher exited (${code}): ${out}`);
    },
    exited: async (timeoutMs = 60_000) => {
      await pollUntil('the launcher exited', () => code !== undefined, Boolean, { timeoutMs });
      return code ?? null;
    },
  };
}
