import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultSeabios } from '@ccm/qmp';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '@ccm/testing';
import { qemuContainerUnavailable } from '../../tools/demo/qemu-container.js';
import { processesLeft, runTool } from './support/process-table.js';

const DEMO = join(REPO_ROOT, 'dist/tools/demo/main.js');
// The owner's policy names the SEV launch digest of the container guest, computed over QEMU's SeaBIOS.
const bios = (() => {
  try {
    return defaultSeabios();
  } catch {
    return undefined;
  }
})();
const skip = bios && existsSync(bios) ? undefined : 'SeaBIOS is not installed (tools/dev.sh installs it)';
if (skip) console.warn(`[container demo e2e] skipped: ${skip}`);
const noQemu = skip ?? qemuContainerUnavailable();
if (noQemu) console.warn(`[container demo e2e] the QEMU row skipped: ${noQemu}`);

/** The demo's two flows: `--sim` forces the sim drivers; without it the demo runs real guests where it can. */
const FLOWS = [
  {
    flow: 'sim',
    args: ['--sim'],
    banner: 'runs on the sim drivers',
    platform: 'sev-snp',
    tcp: false,
    skip,
    timeoutMs: 300_000,
  },
  {
    flow: 'QEMU',
    args: [],
    banner: 'runs on real guests',
    platform: 'sev',
    tcp: true,
    skip: noQemu,
    timeoutMs: 1_500_000,
  },
] as const;

/**
 * `bash tools/dev.sh demo`: the built demo on real QEMU guests (runc and CRIU inside, two
 * hosts as namespaces) and with `--sim` on the sim drivers, from the owner's policy and
 * `ccm vm launch --overlay` to `ccm migrate --follow`, ends with the counter going on in the new VM and
 * every figure printed (on QEMU: the one TCP connection of a client outside both guests, over kernel
 * WireGuard, still answered, now by the container in the second VM), exits 0, and leaves nothing it started (services, NATS, Postgres, the sim VMs
 * and the guest-agents inside them) in the process table.
 */
describe('the README demo (bash tools/dev.sh demo): a container between two confidential VMs', () => {
  let state: string | undefined;
  afterEach(async () => {
    if (state) await rm(state, { recursive: true, force: true });
  });

  for (const f of FLOWS)
    it.skipIf(f.skip !== undefined)(
      `${f.flow}: migrates a counting container between two confidential VMs, prints the figures and leaves no process`,
      async () => {
        state = await mkdtemp(join(tmpdir(), 'ccm-demo-container-'));
        const tag = randomUUID();
        const demo = runTool(DEMO, [...f.args, '--state', state], tag);
        const { code } = await demo.exited;
        const out = demo.out();
        const lines = out.split('\n');
        const result = lines.findIndex((l) => l.includes('result: '));
        console.log(lines.slice(result, result + 6).join('\n'));
        expect(code, out.slice(-4000)).toBe(0);
        expect(out).toContain(f.banner);
        expect(out).toMatch(/ccm vm launch --host host-a --overlay ov-demo: cvm-\S+, attested launch/);
        expect(out).toMatch(/│ {3}✓ rotate in /);
        expect(out).toMatch(/│ outcome: Succeeded \(all 12 steps succeeded\)/);
        // Pre-copy's bar: a pre-dump round's total is an estimate (what moved plus what is dirty);
        // the final dump's is what every round moved, so the bar ends full on it.
        expect(out).toMatch(/│ +pre-dump round 1 \[[#-]{20}\] +\d+% [\d.]+ \S+ \/ ~[\d.]+ \S+ \(estimate\)/);
        expect(out).toMatch(/│ +final dump \(round \d+, source frozen\) \[#{20}\] 100% ([\d.]+ \S+) \/ \1$/m);
        const tail = lines.slice(result).join('\n');
        const m =
          /result: Succeeded: web-1 counts on in (cvm-\S+) on host-b \((\d+) in (cvm-\S+) when the migration began, (\d+) on arrival, then (\d+)\)/.exec(
            tail,
          );
        expect(m, tail).not.toBeNull();
        const [, target, before, source, landed, later] = m!;
        expect(target).not.toBe(source);
        // The counter carries on from where it was (not restarted) and goes on at the target.
        expect(Number(landed)).toBeGreaterThanOrEqual(Number(before));
        expect(Number(later)).toBeGreaterThan(Number(landed));
        expect(tail).toMatch(
          f.tcp
            ? /blackout \d+ ms, frozen \d+ ms, brownout \d+ ms \(the client's longest gap; cut-over \d+ ms, 3 peers\)/
            : /blackout \d+ ms, frozen \d+ ms, brownout \d+ ms \(cut-over \d+ ms, \d+ peers\)/,
        );
        if (f.tcp) {
          // One TCP connection from outside both guests, over the real overlay, across the move.
          const c =
            /TCP: the same connection (\S+) → (\S+):8080 still talks to web-1, now in (cvm-\S+): (\d+) answers by A \(last count (\d+)\), (\d+) by B after the cut-over \(counts (\d+) to (\d+); B counts (\d+)\), \d+ between the freeze request and the cut-over's end; longest gap (\d+) ms \(the brownout as the client saw it\); never closed/.exec(
              tail,
            );
          expect(c, tail).not.toBeNull();
          const [, local, , inVm, byA, lastA, byB, firstB, lastB, countB] = c!;
          // The socket it opened before `ccm migrate` (same local port) is the one answered now.
          expect(out).toContain(`TCP: ${local} → `);
          expect(inVm).toBe(target);
          expect(Number(byA)).toBeGreaterThan(0);
          expect(Number(byB)).toBeGreaterThan(5);
          // B answers on from the count A had: the same container, its count never going back.
          expect(Number(firstB)).toBeGreaterThanOrEqual(Number(lastA));
          expect(Number(lastB)).toBeGreaterThan(Number(firstB));
          expect(Number(countB)).toBeGreaterThanOrEqual(Number(lastB));
        }
        expect(tail).toMatch(/image bytes per round: round 1 [\d.]+ MiB.*final dump \d+ [\d.]+ MiB/);
        expect(tail).toMatch(
          new RegExp(
            `key release #\\d+: granted \\S+ under policy v1 to source cvm-\\S+ \\(${f.platform}[,)].* and target cvm-\\S+ \\(${f.platform}[,)]`,
          ),
        );
        expect(tail).toMatch(/ended \d+ VM process\(es\)/);
        expect(tail).toMatch(/done in [\d.]+s/);
        expect(await processesLeft(tag, state)).toEqual([]);
      },
      f.timeoutMs,
    );
});
