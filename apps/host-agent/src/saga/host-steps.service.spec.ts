import { HostErrorCodes, type StepCommand, type TransferPhase } from '@ccm/contracts';
import { SevPolicyBit } from '@ccm/sev';
import { describe, expect, it } from 'vitest';
import { type HostAgentConfig } from '../config.js';
import { type HostStore } from '../store/host-store.js';
import { type TransferRecord, type VmSev } from '../store/records.js';
import { type TransferService } from '../transfer/transfer.service.js';
import { type VmService } from '../vm/vm.service.js';
import { HostSteps } from './host-steps.service.js';

/**
 * The source's transfer as `await-convergence` polls it: each poll answers the next record. `sev`: the
 * source VM's SEV record (its attested launch's policy), when it is an SEV guest.
 */
function stepsOver(
  records: Array<Partial<TransferRecord> & { phase: TransferPhase }>,
  sev?: VmSev,
): HostSteps {
  let i = 0;
  const transfers = {
    current: () =>
      Promise.resolve({
        migrationId: 'mig-1',
        vmId: 'tiny',
        uri: 'tcp:10.0.0.3:4444',
        startedAt: new Date(),
        phaseChangedAt: new Date(),
        ...records[Math.min(i++, records.length - 1)],
      } as TransferRecord),
  } as unknown as TransferService;
  const config = { CCM_MIGRATION_POLL_MS: 1, CCM_MIGRATION_MAX_DURATION_MS: 5_000 } as HostAgentConfig;
  const vms = { get: () => ({ record: { sev } }) } as unknown as VmService;
  return new HostSteps(config, vms, transfers, {} as HostStore);
}

const cmd = { migrationId: 'mig-1', step: 'converge', workload: { id: 'tiny' }, context: {} } as StepCommand;
const paused = {
  phase: 'AwaitingSwitchover',
  progress: { expectedDowntimeMs: 12, ramTransferredBytes: 4096 } as TransferRecord['progress'],
} as const;

describe('await-convergence', () => {
  it('answers the expected downtime once the migration waits before switch-over (a plain guest commits nothing)', async () => {
    const steps = stepsOver([{ phase: 'Active' }, paused]);
    await expect(steps.awaitConvergence(cmd)).resolves.toEqual({
      expectedDowntimeMs: 12,
      bytesTransferred: 4096,
    });
  });

  // Regression: a migration the agent cancelled on a stall was seen while still Cancelling, and the step
  // failed MIGRATION_FAILED "Cancelling: no reason recorded", losing the stall's code and reason.
  it('fails with the recorded code and reason once a cancelled migration ended, not while Cancelling', async () => {
    const steps = stepsOver([
      { phase: 'Active' },
      { phase: 'Cancelling' },
      { phase: 'Cancelling' },
      {
        phase: 'Failed',
        errorCode: HostErrorCodes.MigrationStalled,
        reason: 'no progress for 30000 ms',
      },
    ]);
    await expect(steps.awaitConvergence(cmd)).rejects.toMatchObject({
      code: HostErrorCodes.MigrationStalled,
      message: 'migration mig-1 Failed: no progress for 30000 ms',
      retryable: false,
    });
  });

  it.each([
    { guest: 'an SEV', policy: SevPolicyBit.NODBG, sevMode: 'sev', label: 'SEV guest' },
    {
      guest: 'an SEV-ES',
      policy: SevPolicyBit.NODBG | SevPolicyBit.ES,
      sevMode: 'sev-es',
      label: 'SEV-ES guest',
    },
  ])(
    '$guest source says switch-over cannot be undone: SEND_FINISH leaves its context SENT',
    async ({ policy, sevMode, label }) => {
      const reply = await stepsOver([paused], { policy, secretInjected: true }).awaitConvergence(cmd);
      expect(reply).toEqual({
        expectedDowntimeMs: 12,
        bytesTransferred: 4096,
        sevMode,
        commitsNextStep: expect.stringContaining(`${label}: switch-over ends with SEND_FINISH`),
      });
      expect(reply.commitsNextStep).toContain('the SEV source cannot be resumed after SEND_FINISH');
    },
  );

  it("without the VM's record, the admission's SEV policy decides", async () => {
    const context = { sevPolicy: SevPolicyBit.ES };
    await expect(stepsOver([paused]).awaitConvergence({ ...cmd, context })).resolves.toMatchObject({
      sevMode: 'sev-es',
      commitsNextStep: expect.stringMatching(/^SEV-ES guest: /),
    });
  });

  it('an SEV guest that switched to post-copy names both reasons', async () => {
    const postcopy = { reason: 'pre-copy does not converge' } as TransferRecord['postcopy'];
    const reply = await stepsOver([{ ...paused, postcopy }], {
      policy: SevPolicyBit.NODBG,
      secretInjected: true,
    }).awaitConvergence(cmd);
    expect(reply.postcopy).toBe(true);
    expect(reply.commitsNextStep).toMatch(/^post-copy \(pre-copy does not converge\): .*; SEV guest: /);
  });

  it('a migration the saga cancelled fails as Cancelled with its reason', async () => {
    const steps = stepsOver([
      { phase: 'Cancelling' },
      { phase: 'Cancelled', reason: 'cancelled by the migration saga' },
    ]);
    await expect(steps.awaitConvergence(cmd)).rejects.toMatchObject({
      code: HostErrorCodes.MigrationFailed,
      message: 'migration mig-1 Cancelled: cancelled by the migration saga',
    });
  });
});

describe('switch-over', () => {
  /** A switch-over whose transfer ends `Failed` while the source VM's record is `phase`. */
  const failedWithSource = (phase: string) => {
    const transfers = {
      continue: () => Promise.resolve(),
      current: () =>
        Promise.resolve({
          migrationId: 'mig-1',
          vmId: 'tiny',
          phase: 'Failed',
          reason: 'the destination went away',
        } as TransferRecord),
    } as unknown as TransferService;
    const config = { CCM_MIGRATION_POLL_MS: 1, CCM_MIGRATION_MAX_DURATION_MS: 5_000 } as HostAgentConfig;
    const vms = { get: () => ({ record: { phase } }) } as unknown as VmService;
    return new HostSteps(config, vms, transfers, {} as HostStore).switchOver({ ...cmd, step: 'switch-over' });
  };

  it('a failed switch-over whose source runs again took no effect (the saga may roll back)', async () => {
    await expect(failedWithSource('Running')).rejects.toMatchObject({
      code: HostErrorCodes.MigrationFailed,
      effect: 'none',
    });
  });

  it('a failed switch-over whose source does not run may have acted (an SEV source past SEND_FINISH)', async () => {
    await expect(failedWithSource('Paused')).rejects.toMatchObject({ effect: 'maybe' });
  });
});

describe('prepare-incoming', () => {
  it('gives the destination the guest address lease the saga read from the source', async () => {
    const asked: unknown[] = [];
    const vms = {
      prepareIncoming: (req: unknown) => {
        asked.push(req);
        return Promise.resolve({ targetVmId: 'tiny', uri: 'tcp:10.0.0.3:4444' });
      },
    } as unknown as VmService;
    const steps = new HostSteps({} as HostAgentConfig, vms, {} as TransferService, {} as HostStore);
    const guestNet = { address: '10.77.0.100', prefix: 24, gateway: '10.77.0.1' };
    const vmSpec = { memoryMiB: 32, cpus: 1 };
    for (const context of [{ vmSpec, guestNet }, { vmSpec }]) {
      await expect(steps.prepareIncoming({ ...cmd, step: 'prepare-incoming', context })).resolves.toEqual({
        targetVmId: 'tiny',
        incomingUri: 'tcp:10.0.0.3:4444',
      });
    }
    expect(asked[0]).toMatchObject({ vmId: 'tiny', migrationId: 'mig-1', spec: vmSpec, guestNet });
    expect(asked[1]).not.toHaveProperty('guestNet');
  });
});
