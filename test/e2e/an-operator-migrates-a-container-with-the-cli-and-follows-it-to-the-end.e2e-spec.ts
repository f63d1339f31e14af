import { migrationIdFor } from '@ccm/contracts';
import {
  FAST_ENV,
  startActors,
  startServiceProcess,
  startTestStack,
  type OperatorClient,
  type ScriptedParticipants,
  type ServiceProcess,
  type TestStack,
} from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ccm } from './support/audit-cli.js';

/** `ccm`'s exit codes (apps/cli/src/errors.ts: 5 is a followed migration that did not succeed). */
const OK = 0;
const NOT_SUCCEEDED = 5;
/** Splits a command line on spaces: `words('migrate w --from a --to b')`. */
const words = (line: string): string[] => line.split(' ').filter(Boolean);

describe('an operator migrates a container with the ccm CLI and follows it to the end', () => {
  let stack: TestStack;
  let coordinator: ServiceProcess;
  let operator: OperatorClient;
  let participants: ScriptedParticipants;
  let flags: string[];

  beforeAll(async () => {
    stack = await startTestStack({ scriptedHosts: true });
    ({ operator, participants } = await startActors(stack));
    // Pre-copy reports two rounds of data-plane progress before it answers.
    participants.setScript((c) => {
      if (c.step !== 'pre-copy' || c.kind !== 'action') return undefined;
      const until = (async () => {
        for (const round of [1, 2]) {
          await participants.publishProgress('checkpoint', {
            migrationId: c.migrationId,
            step: 'pre-copy',
            stage: `pre-dump round ${round}`,
            round,
            bytesTransferred: round * (256 << 20),
            bytesTotal: 512 << 20,
            at: new Date().toISOString(),
          });
        }
        await new Promise((r) => setTimeout(r, 300));
      })();
      return { kind: 'hold', until };
    });
    coordinator = await startServiceProcess(
      'saga-coordinator',
      // `log` level: the launcher waits for the `ready` line.
      stack.env({ ...FAST_ENV, CCM_INSTANCE_ID: 'coordinator-e2e', CCM_LOG_LEVEL: 'log' }),
      { readyTimeoutMs: 60_000 },
    );
    flags = ['--nats-url', stack.nats.url, '--keys-dir', stack.keysDir];
  }, 120_000);

  afterAll(async () => {
    await coordinator?.stop('SIGTERM');
    await participants?.stop();
    await operator?.close();
    await stack?.stop();
  });

  it('ccm migrate --follow prints every step and the data-plane progress, and exits 0', async () => {
    const argv = words('migrate web-1 --from host-a --to host-b --idempotency-key e2e-1 --follow');
    const run = await ccm([...argv, ...flags]);
    expect(run.code, run.stderr).toBe(OK);
    const text = run.stdout;
    expect(text).toContain(`migration ${migrationIdFor('e2e-1')} requested: container web-1 host-a → host-b`);
    for (const step of ['admit', 'attest-target', 'pre-copy', 'cut-over', 'verify', 'commit', 'rotate']) {
      expect(text).toContain(`  ✓ ${step} in `);
    }
    expect(text).toContain('    pre-dump round 2 [####################] 100% 512.0 MiB / 512.0 MiB');
    // The last line puts the overlay's brownout (the scripted cut-over reply's) beside the blackout.
    expect(text).toMatch(
      /Succeeded after [\d.]+ (ms|s): all 12 steps succeeded; blackout [\d.]+ (ms|s), brownout 12 ms \(cut-over 3 ms, 2 peers\)\n$/,
    );
  });

  it('ccm migration and ccm migrations show it', async () => {
    const one = await ccm(['migration', migrationIdFor('e2e-1'), ...flags]);
    expect(one.code, one.stderr).toBe(OK);
    expect(one.stdout).toContain(`${migrationIdFor('e2e-1')}  Succeeded: all 12 steps succeeded`);
    expect(one.stdout).toContain('action #1 container-checkpoint pre-copy: Succeeded');
    expect(one.stdout).toMatch(
      /\n {2}figures blackout [\d.]+ (ms|s), brownout 12 ms \(cut-over 3 ms, 2 peers\)\n/,
    );
    const all = await ccm(['migrations', '--host', 'host-b', ...flags]);
    expect(all.code, all.stderr).toBe(OK);
    expect(all.stdout).toContain(migrationIdFor('e2e-1'));
  });

  it('a migration that rolls back exits 5 and says why', async () => {
    participants.plan(migrationIdFor('e2e-2'), (c) =>
      c.step === 'restore' && c.kind === 'action'
        ? {
            kind: 'fail',
            retryable: false,
            effect: 'none',
            code: 'RESTORE_FAILED',
            message: 'criu restore: no such pid',
          }
        : undefined,
    );
    const argv = words('migrate web-2 --from host-a --to host-b --idempotency-key e2e-2 --follow');
    const run = await ccm([...argv, ...flags]);
    expect(run.code, run.stderr).toBe(NOT_SUCCEEDED);
    const text = run.stdout;
    expect(text).toContain('  ✗ restore failed after');
    expect(text).toContain('RESTORE_FAILED: criu restore: no such pid');
    expect(text).toContain('  ↶ freeze-dump undone in');
    expect(text).toMatch(/RolledBack after [\d.]+ (ms|s): rolled back: /);
  });
});
