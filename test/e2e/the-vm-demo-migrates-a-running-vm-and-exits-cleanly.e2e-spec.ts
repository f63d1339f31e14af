import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { findQemuBinary } from '@ccm/qmp';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '@ccm/testing';

const skip = findQemuBinary()
  ? undefined
  : 'qemu-system-x86_64 is not installed (tools/dev.sh installs qemu-system-x86)';
if (skip) console.warn(`[demo e2e] skipped: ${skip}`);

function runDemo(): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, 'dist/tools/demo/main.js'), 'vm'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => resolve({ code, out }));
  });
}

describe.skipIf(skip !== undefined)('the VM demo (bash tools/dev.sh demo vm)', () => {
  it('pings every service, live-migrates a running VM between two hosts and exits 0', async () => {
    const { code, out } = await runDemo();
    console.log(
      out
        .split('\n')
        .filter((l) => /completed:|counter:|done in/.test(l))
        .join('\n'),
    );
    expect(code).toBe(0);
    expect(out).toMatch(/host-agent@host-b\s+[\d.]+ ms\s+health=ok/);
    expect(out).toMatch(/completed: total \d+ ms, downtime \d+ ms/);
    expect(out).toMatch(/last \d+ on host-a, then \d+, \d+/);
    expect(out).toContain('the source is MigratedAway');
  }, 240_000);
});
