import { join } from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import {
  CcmError,
  ErrorCodes,
  HostErrorCodes,
  isFinalTransferPhase,
  isFinalVmPhase,
  COMMITS_NEXT_STEP,
  type ConvergedReply,
  type StepCommand,
  type TransferPhase,
  type VmSevMode,
} from '@ccm/contracts';
import { SevPolicyBit } from '@ccm/sev';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type HostAgentConfig } from '../config.js';
import { HostStore } from '../store/host-store.js';
import { type TransferRecord } from '../store/records.js';
import { TransferService } from '../transfer/transfer.service.js';
import { VmService } from '../vm/vm.service.js';
import { serialTail, watchProgress } from './guest-progress.js';

/**
 * How long `verify-vm` watches the destination guest for progress: below the saga's verify timeout
 * (10 s), above the guest's one-second counter period with room for a loaded machine.
 */
export const VERIFY_PROGRESS_DEADLINE_MS = 8_000;
/** How long `cancel-migration` waits for a cancelled migration to end before answering retryable. */
const CANCEL_SETTLE_MS = 10_000;

/**
 * The saga's host-agent steps (libs/contracts `HOST_STEP_COMMANDS`) mapped onto this host's VM and
 * transfer services. The VM is the workload id on both hosts; the migration id is the saga's. Every
 * step is idempotent by (migration, VM): repeating one answers what is, and a compensation of
 * something that never happened succeeds without acting.
 */
@Injectable()
export class HostSteps {
  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: HostAgentConfig,
    private readonly vms: VmService,
    private readonly transfers: TransferService,
    private readonly store: HostStore,
  ) {}

  /** Target: the destination VM with the source's spec, listening for the stream. */
  async prepareIncoming(cmd: StepCommand): Promise<{ targetVmId: string; incomingUri: string }> {
    const { vmSpec, sevPolicy, allowPostcopy, guestNet } = cmd.context;
    const r = await this.vms.prepareIncoming({
      vmId: cmd.workload.id,
      spec: vmSpec!,
      migrationId: cmd.migrationId,
      ...(allowPostcopy !== undefined ? { allowPostcopy } : {}),
      ...(sevPolicy !== undefined ? { sev: { policy: sevPolicy } } : {}),
      ...(guestNet ? { guestNet } : {}),
    });
    return { targetVmId: r.targetVmId, incomingUri: r.uri };
  }

  /**
   * Target: ends this migration's destination VM, if it still runs. A VM of that id that is not this
   * migration's destination is never touched.
   */
  async destroyIncoming(cmd: StepCommand, reason = 'the migration was rolled back'): Promise<object> {
    const vm = this.vms.get(cmd.workload.id);
    if (!vm || vm.record.origin !== 'incoming' || vm.record.migrationId !== cmd.migrationId) {
      return { destroyed: false };
    }
    await this.vms.destroy(vm.vmId, `${reason} (${cmd.migrationId})`);
    return { destroyed: true };
  }

  /** Source: migrate to the prepared destination, pausing before switch-over, holding the source. */
  async startMigration(cmd: StepCommand): Promise<object> {
    const t = await this.transfers.start({
      migrationId: cmd.migrationId,
      vmId: cmd.workload.id,
      uri: cmd.context.incomingUri!,
      pauseBeforeSwitchover: true,
      holdSource: true,
      ...(cmd.context.allowPostcopy !== undefined ? { allowPostcopy: cmd.context.allowPostcopy } : {}),
      ...(cmd.context.targetChain ? { sev: cmd.context.targetChain } : {}),
      step: 'converge',
    });
    return { phase: t.phase };
  }

  /**
   * Source: waits until the migration converged (paused before switch-over) or ended. A migration being
   * cancelled (by the saga, or by the agent on a stall or a switch-over timeout) is waited for until it
   * ended, so the step fails with the recorded code and reason (e.g. MIGRATION_STALLED), not a bare
   * "Cancelling". A migration that switched to post-copy pauses there too, and its reply says the
   * switch-over cannot be undone.
   */
  async awaitConvergence(cmd: StepCommand): Promise<ConvergedReply> {
    const r = await this.until(cmd.migrationId, (p) => !['Starting', 'Active', 'Cancelling'].includes(p));
    if (r.phase === 'Cancelled' || r.phase === 'Failed') throw ended(r);
    // What this agent knows of the guest (its attested launch or arrival), else the admission's read.
    const policy = this.vms.get(cmd.workload.id)?.record.sev?.policy ?? cmd.context.sevPolicy;
    const sevMode = policy === undefined ? undefined : sevModeOf(policy);
    const commits = switchOverCommits(r.postcopy?.reason, sevMode);
    return {
      expectedDowntimeMs: r.progress?.expectedDowntimeMs ?? 0,
      bytesTransferred: r.progress?.ramTransferredBytes ?? 0,
      ...(r.postcopy ? { postcopy: true } : {}),
      ...(sevMode ? { sevMode } : {}),
      ...(commits ? { [COMMITS_NEXT_STEP]: commits } : {}),
    };
  }

  /** Source: `continue`, then waits for completion; the source guest stays paused (held). */
  async switchOver(cmd: StepCommand): Promise<object> {
    await this.transfers.continue(cmd.migrationId);
    const r = await this.until(cmd.migrationId, isFinalTransferPhase);
    const source = this.vms.get(cmd.workload.id);
    // The source runs again: the switch-over left nothing behind that the rollback cannot undo (an SEV
    // source past SEND_FINISH, or one left after a broken post-copy, is never Running here).
    if (r.phase !== 'Completed') throw ended(r, source?.record.phase === 'Running' ? 'none' : 'maybe');
    return {
      figures: r.figures,
      sourceHeld: source?.record.phase === 'Paused',
      ...(r.postcopy ? { postcopy: r.postcopy } : {}),
    };
  }

  /** Target (compensation of switch-over): stop the destination, so the source may resume alone. */
  switchBack(cmd: StepCommand): Promise<object> {
    return this.destroyIncoming(cmd, 'stopped for the rollback to the source');
  }

  /**
   * Source (compensation of start-migration): a migration still running is cancelled (QEMU resumes
   * the source); one that completed with the source held is undone by resuming the held source.
   */
  async cancelMigration(cmd: StepCommand): Promise<object> {
    let r = await this.transfers.current(cmd.migrationId);
    if (!r) return { cancelled: false };
    if (!isFinalTransferPhase(r.phase)) {
      await this.transfers.cancel(cmd.migrationId, 'cancelled by the migration saga');
      r = await this.until(cmd.migrationId, isFinalTransferPhase, CANCEL_SETTLE_MS);
    }
    if (r.phase !== 'Completed') return { cancelled: true, phase: r.phase };
    const vm = this.vms.get(r.vmId);
    if (vm?.record.phase === 'Running') return { resumed: true }; // a repeat: resumed already
    if (!vm || vm.record.phase !== 'Paused') {
      throw new CcmError(
        HostErrorCodes.SourceNotResumable,
        `migration ${cmd.migrationId} completed and the source VM ${r.vmId} is ${vm?.record.phase ?? 'gone'}` +
          (vm?.record.reason ? ` (${vm.record.reason})` : '') +
          ': it cannot be resumed; the guest lives only on the destination',
        { retryable: false, effect: 'none' },
      );
    }
    await this.vms.resume(r.vmId);
    return { resumed: true };
  }

  /**
   * Target (the VM saga's verify): the destination guest runs and its counter advances within
   * {@link VERIFY_PROGRESS_DEADLINE_MS}; otherwise GUEST_NOT_PROGRESSING with its last console lines.
   */
  async verifyVm(cmd: StepCommand): Promise<object> {
    const vm = this.vms.get(cmd.workload.id);
    const runDir = vm?.record.runDir ?? this.vms.runDirOf(cmd.workload.id);
    const serialLog = join(runDir, 'serial.log');
    const verdict = await watchProgress({
      serialLog,
      deadlineMs: VERIFY_PROGRESS_DEADLINE_MS,
      intervalMs: 100,
      gone: () => {
        const now = this.vms.get(cmd.workload.id);
        if (!now || now.record.migrationId !== cmd.migrationId) return 'the destination VM is gone';
        if (isFinalVmPhase(now.record.phase) || now.record.phase === 'Incoming') {
          return `the destination VM is ${now.record.phase}`;
        }
        return undefined;
      },
    });
    if (verdict.kind === 'progressing') {
      return { alive: true, counterFrom: verdict.from, counterTo: verdict.to, waitedMs: verdict.waitedMs };
    }
    const tail = await serialTail(serialLog);
    throw new CcmError(
      HostErrorCodes.GuestNotProgressing,
      `VM ${cmd.workload.id} on ${this.config.CCM_HOST_ID} did not prove alive: ${await this.how(cmd, verdict.why)}; ` +
        `last console lines: ${tail.slice(-5).join(' | ') || '(none)'}`,
      { retryable: false, effect: 'none', details: { serialTail: tail, waitedMs: verdict.waitedMs } },
    );
  }

  /**
   * What became of a destination that is no longer live: its recorded end (phase and why, e.g. the
   * process killed by a signal), read back from the store once the agent has recorded it.
   */
  private async how(cmd: StepCommand, why: string): Promise<string> {
    if (!why.startsWith('the destination VM is')) return why;
    // the exit handler records the end a moment after the VM leaves the live set
    let ended = await this.store.loadVm(cmd.workload.id);
    for (let i = 0; i < 20 && ended?.migrationId === cmd.migrationId && !isFinalVmPhase(ended.phase); i++) {
      await new Promise((r) => setTimeout(r, 50));
      ended = await this.store.loadVm(cmd.workload.id);
    }
    if (!ended || ended.migrationId !== cmd.migrationId || !isFinalVmPhase(ended.phase)) return why;
    return `the destination VM is ${ended.phase}${ended.reason ? ` (${ended.reason})` : ''}`;
  }

  /** Source, after the pivot: the guest moved for good; end the held source. */
  async destroySource(cmd: StepCommand): Promise<object> {
    const vm = this.vms.get(cmd.workload.id);
    if (!vm) return { destroyed: false };
    await this.vms.endProcess(vm, 'MigratedAway', `moved by migration ${cmd.migrationId} (verified)`);
    return { destroyed: true };
  }

  /** Polls the migration until `done(phase)`, at the agent's query period, for at most `timeoutMs`. */
  private async until(
    migrationId: string,
    done: (phase: TransferPhase) => boolean,
    timeoutMs = this.config.CCM_MIGRATION_MAX_DURATION_MS,
  ): Promise<TransferRecord> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const r = await this.transfers.current(migrationId);
      if (!r) {
        throw new CcmError(ErrorCodes.NotFound, `migration ${migrationId} is not known on this host`, {
          retryable: false,
          effect: 'none',
        });
      }
      if (done(r.phase)) return r;
      if (performance.now() >= deadline) {
        throw new CcmError(ErrorCodes.Timeout, `migration ${migrationId} is still ${r.phase}`, {
          retryable: true,
          effect: 'none',
        });
      }
      await new Promise((res) => setTimeout(res, this.config.CCM_MIGRATION_POLL_MS));
    }
  }
}

/** An SEV guest's mode from its 32-bit guest policy: SEV-ES when the policy requires it (bit ES). */
export function sevModeOf(policy: number): VmSevMode {
  return (policy & SevPolicyBit.ES) !== 0 ? 'sev-es' : 'sev';
}

/**
 * Why `switch-over` cannot be undone, when it cannot (the converge reply's `commitsNextStep`, which
 * moves the saga's point of no return there): the migration switched to post-copy (`postcopyReason`),
 * or the guest is an SEV guest, whose source context SEND_FINISH leaves SENT (../shared/spec/sev-api.md
 * §4.3: no command leads from SENT back to RUNNING), so the source can never run again.
 */
export function switchOverCommits(
  postcopyReason: string | undefined,
  sevMode: VmSevMode | undefined,
): string | undefined {
  const why = [
    ...(postcopyReason !== undefined
      ? [`post-copy (${postcopyReason}): once the destination runs, the source cannot resume`]
      : []),
    ...(sevMode
      ? [
          `${sevMode === 'sev-es' ? 'SEV-ES' : 'SEV'} guest: switch-over ends with SEND_FINISH, which leaves ` +
            `the source's guest context SENT; the SEV source cannot be resumed after SEND_FINISH`,
        ]
      : []),
  ];
  return why.length ? why.join('; ').slice(0, 500) : undefined;
}

/** A migration that ended without reaching what the step waited for: the source runs on. */
function ended(r: TransferRecord, effect: 'none' | 'maybe' = 'none'): CcmError {
  return new CcmError(
    r.errorCode ?? HostErrorCodes.MigrationFailed,
    `migration ${r.migrationId} ${r.phase}: ${r.reason ?? 'no reason recorded'}`,
    { retryable: false, effect },
  );
}
