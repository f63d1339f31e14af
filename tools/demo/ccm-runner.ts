import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '@ccm/testing';
import { type LocalStack } from '../stack/stack.js';

const CCM_BIN = join(REPO_ROOT, 'dist', 'apps', 'cli', 'src', 'main.js');

/** The built ccm with the stack's flags; `show` streams its stdout into the demo's, indented. */
export function ccmRunner(stack: LocalStack, say: (m: string) => void, children: Set<ChildProcess>) {
  const flags = ['--nats-url', stack.natsUrl, '--keys-dir', stack.keysDir];
  return (args: string[], show = false) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [CCM_BIN, ...args, ...flags], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.add(child);
      const out = { stdout: '', stderr: '', partial: '' };
      child.stdout.on('data', (d: Buffer) => {
        out.stdout += d.toString();
        if (!show) return;
        const lines = (out.partial + d.toString()).split('\n');
        out.partial = lines.pop() ?? '';
        lines.forEach((l) => say(`   │ ${l}`));
      });
      child.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => {
        children.delete(child);
        if (show && out.partial) say(`   │ ${out.partial}`);
        resolve({ code: code ?? 1, stdout: out.stdout, stderr: out.stderr });
      });
    });
}
