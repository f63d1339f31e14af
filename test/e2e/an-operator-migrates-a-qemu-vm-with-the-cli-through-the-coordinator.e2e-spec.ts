import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { migrationIdFor, type VmView } from '@ccm/contracts';
import { counterReaches, counters, lastOf, pollUntil, REPO_ROOT } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemuHostsUnavailable, type HostNamespaces } from './support/host-namespaces.js';
import { startVmSagaStack, type VmSagaStack } from './support/vm-saga-stack.js';

/**
 * The VM saga end to end with nothing scripted: the operator runs the built `ccm migrate <vm> --kind vm
 * --follow` as a process; the real saga-coordinator drives the real key-broker (attest target,
 * transport session, rotate, under an owner policy the guest-owner identity put, trusting the lab root
 * that endorses both hosts' software secure processors) and two real host-agents, each in its own
 * network namespace running QEMU (TCG) with the tiny guest. Never more than one QEMU pair at a time.
 */
const skip = qemuHostsUnavailable();
if (skip) console.warn(`[ccm migrate --kind vm e2e] skipped: ${skip}`);

const A = 'host-a';
const B = 'host-b';
const CLI = join(REPO_ROOT, 'dist', 'apps', 'cli', 'src', 'main.js');
const VM_STEPS = [
  'admit',
  'attest-target',
  'transport-session',
  'prepare-incoming',
  'start-migration',
  'converge',
  'switch-over',
  'verify',
  'destroy-source',
  'rotate',
];

/** The built CLI as its own process; resolves with its exit code and what it printed. */
function runCli(
  args: string[],
  onLine?: (line: string) => void,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    const take = (b: Buffer) => {
      out += b.toString();
      for (const line of b.toString().split('\n')) if (line) onLine?.(line);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe.skipIf(skip !== undefined)('an operator migrates a QEMU VM with ccm through the coordinator', () => {
  let stack: VmSagaStack | undefined;
  let ns: HostNamespaces;
  let spec: VmSagaStack['spec'];
  let flags: string[];
  const figures: string[] = [];

  const vmOn = async (host: string, vmId: string): Promise<VmView | undefined> =>
    (await ns.client.send(host, 'describe', { vmId })).vms.find((v) => v.vmId === vmId);
  const serial = (v: VmView) => join(v.runDir, 'serial.log');
  const launch = async (vmId: string): Promise<VmView> => {
    const { vm } = await ns.client.send(A, 'launch', { vmId, spec });
    await counterReaches(serial(vm), 2, 60_000);
    return vm;
  };

  beforeAll(async () => {
    stack = await startVmSagaStack('vm-cli', ['tiny-moves', 'tiny-dies']);
    ({ ns, spec } = stack);
    flags = ['--nats-url', ns.stack.nats.url, '--keys-dir', ns.stack.keysDir];
  }, 240_000);

  afterAll(async () => {
    console.log(`[ccm migrate --kind vm e2e] figures:\n  ${figures.join('\n  ')}`);
    await stack?.close();
  });

  it('ccm migrate --kind vm --follow moves the running guest to host-b: its counter goes on there, the source ends after verify', async () => {
    const source = await launch('tiny-moves');
    const t0 = performance.now();
    const { code, out } = await runCli([
      ...['migrate', 'tiny-moves', '--kind', 'vm', '--from', A, '--to', B, '--follow'],
      ...['--idempotency-key', 'e2e-vm-1', ...flags],
    ]);
    figures.push(
      `ccm migrate --follow (tiny-moves): exit ${code} after ${Math.round(performance.now() - t0)} ms`,
    );
    expect(code, out).toBe(0);
    const id = migrationIdFor('e2e-vm-1');
    expect(out).toContain(`migration ${id} requested: vm tiny-moves host-a → host-b`);
    for (const step of VM_STEPS) expect(out).toContain(`  ✓ ${step} in `);
    // the source is destroyed only after the destination proved alive
    expect(out.indexOf('  ✓ verify in ')).toBeLessThan(out.indexOf('  ▸ destroy-source'));
    // the host-agent's data-plane progress reached the operator's screen as bars
    expect(out).toMatch(/^ {4}Active \(active\) \[[#-]{20}\] +\d+% [\d.]+ \w+ \/ [\d.]+ MiB$/m);
    // The last line: the outcome, then the figures the coordinator recorded (blackout = switch-over).
    expect(out).toMatch(
      /Succeeded after [\d.]+ (ms|s): all 10 steps succeeded; blackout \d+ ms, hypervisor downtime \d+ ms\n$/,
    );
    figures.push(...out.split('\n').filter((l) => / in |Succeeded/.test(l)));

    const target = await vmOn(B, 'tiny-moves');
    expect(target).toMatchObject({ phase: 'Running', origin: 'incoming', migrationId: id });
    const lastAtSource = lastOf(await counters(serial(source)));
    const atTarget = await counterReaches(serial(target!), lastAtSource + 2);
    expect(atTarget[0]).toBeGreaterThanOrEqual(lastAtSource);
    expect(await vmOn(A, 'tiny-moves')).toMatchObject({ phase: 'MigratedAway' });

    // the operator's `ccm migration` shows the key-broker's part (attest, session, rotate) answered by it
    const detail = await runCli(['migration', id, '--json', ...flags]);
    expect(detail.code).toBe(0);
    const steps = (
      JSON.parse(detail.out) as {
        steps: Array<{ name: string; attempts: Array<{ participant: string; status: string }> }>;
      }
    ).steps;
    for (const name of ['attest-target', 'transport-session', 'rotate']) {
      expect(steps.find((s) => s.name === name)!.attempts.at(-1)).toMatchObject({
        participant: 'key-broker',
        status: 'Succeeded',
      });
    }
    // one QEMU pair at a time: the moved guest is done with
    await ns.client.send(B, 'destroy', { vmId: 'tiny-moves' });
  }, 300_000);

  it('the destination QEMU dies right after switch-over: the paused source resumes, RolledBack with the destination’s evidence, the guest counts on at host-a', async () => {
    const source = await launch('tiny-dies');
    let killed: number | undefined;
    // The moment the destination guest runs (switch-over done, verify about to watch it), kill its QEMU.
    const killer = pollUntil(
      'the destination guest to run on host-b',
      () => vmOn(B, 'tiny-dies'),
      (v) => v?.phase === 'Running' && v.pid !== undefined,
      { timeoutMs: 180_000, intervalMs: 20 },
    ).then((v) => {
      killed = v!.pid!;
      process.kill(killed, 'SIGKILL');
    });
    const { code, out } = await runCli([
      ...['migrate', 'tiny-dies', '--kind', 'vm', '--from', A, '--to', B, '--follow'],
      ...['--idempotency-key', 'e2e-vm-2', ...flags],
    ]);
    await killer;
    expect(killed).toBeDefined();
    expect(code, out).toBe(5);
    figures.push(...out.split('\n').filter((l) => /✗|↶|RolledBack/.test(l)));
    expect(out).toContain('  ✓ switch-over in ');
    expect(out).toMatch(
      / {2}✗ verify failed after .*GUEST_NOT_PROGRESSING: VM tiny-dies on host-b did not prove alive: the destination VM is Died \(the VM process exited \(code none, signal SIGKILL\)\)/,
    );
    for (const undone of ['switch-over', 'start-migration', 'prepare-incoming']) {
      expect(out).toContain(`  ↶ ${undone} undone in `);
    }
    expect(out).not.toContain('✓ destroy-source');
    expect(out).toMatch(
      /RolledBack after [\d.]+ (ms|s): .*did not prove alive: the destination VM is Died \(the VM process exited \(code none, signal SIGKILL\)\)/,
    );

    const onA = await vmOn(A, 'tiny-dies');
    expect(onA).toMatchObject({ phase: 'Running' });
    const before = lastOf(await counters(serial(source)));
    await counterReaches(serial(source), before + 2);
    const onB = await vmOn(B, 'tiny-dies');
    expect(['Died', 'Failed', 'Destroyed']).toContain(onB?.phase);
    await ns.client.send(A, 'destroy', { vmId: 'tiny-dies' });
  }, 300_000);
});
