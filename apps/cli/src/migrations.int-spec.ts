import { migrationIdFor } from '@ccm/contracts';
import { loadTrustStore } from '@ccm/keys';
import { pollUntil, startTestStack, type TestStack } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './cli.js';
import { ExitCode } from './errors.js';
import { capture, words } from './testing/capture.js';
import { FAKE_COORDINATOR_CONSUMER, FakeCoordinator } from './testing/fake-coordinator.js';

describe('ccm migrate, migrations, migration and cancel against a scripted coordinator', () => {
  let stack: TestStack;
  let fake: FakeCoordinator;
  let flags: string[];

  beforeAll(async () => {
    stack = await startTestStack({
      postgres: false,
      extraConsumers: { 'saga-coordinator': [FAKE_COORDINATOR_CONSUMER] },
    });
    fake = await FakeCoordinator.start(
      await stack.connectAs('saga-coordinator'),
      await stack.identity('saga-coordinator'),
      await loadTrustStore(stack.keysDir),
    );
    flags = ['--nats-url', stack.nats.url, '--keys-dir', stack.keysDir, '--timeout-ms', '3000'];
  });
  afterAll(async () => {
    await fake?.stop();
    await stack?.stop();
  });

  it('publishes a signed request and prints the id its idempotency key names', async () => {
    const c = capture();
    const argv = words(
      'migrate web-1 --from host-a --to host-b --idempotency-key k-1 --priority maintenance --vm vm-src',
    );
    expect(await runCli([...argv, ...flags], c.io)).toBe(ExitCode.Ok);
    const id = migrationIdFor('k-1');
    expect(c.out.join('')).toBe(
      `migration ${id} requested: container web-1 host-a → host-b (priority maintenance, idempotency key k-1)\n`,
    );
    const seen = await pollUntil('the coordinator to get it', () => fake.requests.find((r) => r.id === id));
    expect(seen.envelope).toMatchObject({
      source: 'operator',
      idempotencykey: 'k-1',
      data: {
        workload: 'web-1',
        kind: 'container',
        sourceHost: 'host-a',
        targetHost: 'host-b',
        priority: 'maintenance',
        sourceVm: 'vm-src',
      },
    });
  });

  it('--allow-postcopy asks that a VM migration may switch to post-copy', async () => {
    const c = capture();
    const argv = words(
      'migrate vm-1 --kind vm --from host-a --to host-b --idempotency-key k-pc --allow-postcopy',
    );
    expect(await runCli([...argv, ...flags], c.io)).toBe(ExitCode.Ok);
    const id = migrationIdFor('k-pc');
    const seen = await pollUntil('the coordinator to get it', () => fake.requests.find((r) => r.id === id));
    expect(seen.envelope).toMatchObject({ data: { workload: 'vm-1', kind: 'vm', allowPostcopy: true } });
  });

  it('--follow prints progress until the migration succeeds', async () => {
    const c = capture();
    expect(
      await runCli(['migrate', 'web-2', '--from', 'host-a', '--to', 'host-b', '--follow', ...flags], c.io),
    ).toBe(ExitCode.Ok);
    const lines = c.out.join('').split('\n');
    expect(lines[0]).toMatch(/^migration mig-[0-9a-f]{24} requested: container web-2/);
    expect(lines).toContain('queued: container web-2 host-a → host-b (user)');
    expect(lines).toContain('admitted after 3 ms in the queue');
    expect(lines).toContain('  ▸ admit (saga-coordinator admit)');
    expect(lines).toContain('  ✓ admit in 4 ms');
    expect(lines).toContain('    pre-dump round 2 [##########----------]  50% 512.0 MiB / 1.0 GiB');
    expect(lines.at(-2)).toBe(
      'Succeeded after 1.5 s: all 12 steps succeeded; blackout 180 ms, brownout 47 ms (cut-over 31 ms, 16 peers)',
    );
  });

  it('--follow exits 5 when the migration rolls back and 4 when it is rejected', async () => {
    const doomed = capture();
    expect(
      await runCli(['migrate', 'doomed-1', '--from', 'a', '--to', 'b', '--follow', ...flags], doomed.io),
    ).toBe(ExitCode.NotSucceeded);
    expect(doomed.out.join('')).toContain('RolledBack after 1.5 s: rolled back: pre-copy failed');
    const busy = capture();
    expect(
      await runCli(['migrate', 'busy-1', '--from', 'a', '--to', 'b', '--follow', ...flags], busy.io),
    ).toBe(ExitCode.Refused);
    expect(busy.out.join('')).toContain(
      'rejected: container busy-1 already has an active migration mig-other [CONFLICT]',
    );
  });

  it('--follow --json prints one JSON object per event', async () => {
    const c = capture();
    expect(
      await runCli(['migrate', 'web-3', '--from', 'a', '--to', 'b', '--follow', '--json', ...flags], c.io),
    ).toBe(ExitCode.Ok);
    const objects = c.out
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objects[0]).toMatchObject({ request: { workload: 'web-3' } });
    expect(objects.slice(1).map((o) => o['event'])).toEqual(
      words('requested admitted phase-changed step-started step-succeeded progressed finished'),
    );
    expect(objects.slice(1).map((o) => o['seq'])).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('--follow attached to a migration already under way prints its whole story, then follows it to the end', async () => {
    const argv = words('migrate running-1 --from host-a --to host-b --idempotency-key k-running');
    expect(await runCli([...argv, ...flags], capture().io)).toBe(ExitCode.Ok);
    const id = migrationIdFor('k-running');
    await pollUntil('the fake to run it', () => fake.details.get(id)?.eventSeq);
    // Regression: the follower skipped every event the migration had when it attached (CI saw
    // `ccm migrate --follow` miss the admit step when the coordinator was quick).
    const c = capture();
    const exit = runCli([...argv, '--follow', ...flags], c.io);
    await pollUntil(
      'the story so far',
      () => c.out.join(''),
      (out) => out.includes('  ✓ admit in 4 ms'),
    );
    await fake.finish(id);
    expect(await exit).toBe(ExitCode.Ok);
    const lines = c.out.join('').split('\n');
    expect(lines.slice(1, -1)).toEqual([
      'queued: container running-1 host-a → host-b (user)',
      'admitted after 3 ms in the queue',
      'phase Pending → Running',
      '  ▸ admit (saga-coordinator admit)',
      '  ✓ admit in 4 ms',
      '    pre-dump round 2 [##########----------]  50% 512.0 MiB / 1.0 GiB',
      '  ▸ attest-target (key-broker attest-target)',
      '  ✓ attest-target in 7 ms',
      'Succeeded after 2.5 s: all 12 steps succeeded',
    ]);
  });

  it('following a key that already ended says so instead of waiting', async () => {
    await runCli(
      ['migrate', 'web-4', '--from', 'a', '--to', 'b', '--idempotency-key', 'k-4', '--follow', ...flags],
      capture().io,
    );
    const c = capture();
    expect(
      await runCli(
        ['migrate', 'web-4', '--from', 'a', '--to', 'b', '--idempotency-key', 'k-4', '--follow', ...flags],
        c.io,
      ),
    ).toBe(ExitCode.Ok);
    expect(c.out.join('')).toContain(`${migrationIdFor('k-4')} already ended Succeeded`);
  });

  it.each([
    [['migrate', '--from', 'a', '--to', 'b'], 'needs the workload'],
    [['migrate', 'w', '--from', 'a'], '--to'],
    [['migrate', 'w', '--from', 'a', '--to', 'a'], '--to: must differ from sourceHost'],
    [['migrate', 'w', '--from', 'a', '--to', 'b', '--kind', 'pod'], '--kind'],
    [['migrate', 'w', '--from', 'a', '--to', 'b', '--priority', 'urgent'], '--priority'],
    [['migrate', 'w.1', '--from', 'a', '--to', 'b'], 'workload'],
    [['migrate', 'w', '--from', 'a', '--to', 'b', '--idempotency-key', 'has space'], '--idempotency-key'],
    [['migrations', '--limit', '0'], '--limit'],
    [['migrations', '--phase', 'Dancing'], '--phase'],
    [['migration'], 'needs a migration id'],
    [['cancel'], 'cancel needs a migration id'],
  ])('%j is a usage error naming %s', async (argv, text) => {
    const c = capture();
    expect(await runCli([...argv, ...flags, '--json'], c.io)).toBe(ExitCode.Usage);
    const body = JSON.parse(c.err.join('')) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('USAGE');
    expect(body.error.message).toContain(text);
  });

  it('rejects a bad migrate request before connecting anywhere', async () => {
    const c = capture();
    const argv = words('migrate w --from a --to a --nats-url nats://127.0.0.1:1 --keys-dir /nope');
    expect(await runCli(argv, c.io)).toBe(ExitCode.Usage);
  });

  it('lists migrations as a table, filtered', async () => {
    const c = capture();
    expect(await runCli(['migrations', '--phase', 'RolledBack', '--host', 'a', ...flags], c.io)).toBe(
      ExitCode.Ok,
    );
    const [head, ...rows] = c.out.join('').trim().split('\n');
    expect(head).toMatch(/^ID\s+PHASE\s+WORKLOAD\s+HOSTS\s+PRIORITY\s+STEP\s+REQUESTED$/);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toContain('RolledBack');
    expect(rows[0]).toContain('container/doomed-1');
    expect(fake.queries.at(-1)).toEqual({ phase: 'RolledBack', host: 'a', limit: 50 });
  });

  it('shows one migration, and says NOT_FOUND for an unknown id', async () => {
    const c = capture();
    const id = migrationIdFor('k-1');
    expect(await runCli(['migration', id, ...flags], c.io)).toBe(ExitCode.Ok);
    expect(c.out.join('')).toContain(`${id}  Succeeded`);
    expect(c.out.join('')).toContain('container web-1  host-a → host-b  priority maintenance  by operator');
    const missing = capture();
    expect(await runCli(['migration', 'mig-missing', ...flags], missing.io)).toBe(ExitCode.Refused);
    expect(missing.err.join('')).toContain('[NOT_FOUND]');
  });

  it('cancel --follow reports a refusal and why', async () => {
    const slow = capture();
    await runCli(
      ['migrate', 'silent-1', '--from', 'a', '--to', 'b', '--idempotency-key', 'k-silent', ...flags],
      slow.io,
    );
    const c = capture();
    const id = migrationIdFor('k-silent');
    expect(await runCli(['cancel', id, '--reason', 'changed my mind', '--follow', ...flags], c.io)).toBe(
      ExitCode.Refused,
    );
    expect(c.out.join('')).toContain(`cancel of ${id} requested`);
    expect(c.out.join('')).toContain('cancel refused (PastPointOfNoReturn)');
    expect(fake.cancels).toContain(id);
  });
});
