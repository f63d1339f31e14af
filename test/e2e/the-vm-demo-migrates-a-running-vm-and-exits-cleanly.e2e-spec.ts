import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '@ccm/testing';
import { qemuHostsUnavailable } from './support/host-namespaces.js';

/** The VM demo runs its two hosts as network namespaces with QEMU, as the VM saga's e2e does. */
const skip = qemuHostsUnavailable();
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
  it('pings every service, migrates a running VM with ccm migrate --kind vm through the coordinator and exits 0', async () => {
    const { code, out } = await runDemo();
    console.log(
      out
        .split('\n')
        .filter((l) => /Succeeded after|result:|QEMU:|counter:|done in/.test(l))
        .join('\n'),
    );
    expect(code, out).toBe(0);
    expect(out).toMatch(/host-agent@host-b\s+[\d.]+ ms\s+health=ok/);
    expect(out).toMatch(/\$ ccm migrate demo-vm-\S+ --kind vm --from host-a --to host-b --follow\n/);
    for (const step of ['admit', 'attest-target', 'prepare-incoming', 'converge', 'switch-over', 'verify'])
      expect(out).toContain(`│   ✓ ${step} in `);
    expect(out.indexOf('✓ verify in ')).toBeLessThan(out.indexOf('▸ destroy-source'));
    expect(out).toMatch(
      /│ Succeeded after [\d.]+ (ms|s): all 10 steps succeeded; blackout \d+ ms, hypervisor downtime \d+ ms\n/,
    );
    // the audit replay's timeline, rebuilt from the signed events alone
    expect(out).toMatch(/│ outcome: Succeeded .*\n {3}│ record: INTACT/);
    expect(out).toContain('result: Succeeded (rebuilt from the audit stream alone: Succeeded)');
    expect(out).toMatch(/QEMU: total \d+ ms, downtime \d+ ms/);
    expect(out).toMatch(/last \d+ on host-a, then \d+, \d+.* on host-b \(verified there\)/);
    expect(out).toContain('the source is MigratedAway');
  }, 300_000);
});
