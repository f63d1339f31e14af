import { Inject, Injectable, Logger, type BeforeApplicationShutdown } from '@nestjs/common';
import {
  CcmError,
  ErrorCodes,
  HostErrorCodes,
  isFinalVmPhase,
  type MigrationParams,
  type SevChainBase64,
  type TransferPhase,
  type TransferView,
} from '@ccm/contracts';
import { awaitMigrationEnd, configureMigration, type MigrationInfo, type QmpClient } from '@ccm/qmp';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type HostAgentConfig } from '../config.js';
import { conflict, notFound, toCcmError } from '../errors.js';
import { HostStore, type TransferEvent } from '../store/host-store.js';
import { transferView, type TransferRecord } from '../store/records.js';
import { StateCell } from '../store/state-cell.js';
import { type LiveVm } from '../vm/live-vm.js';
import { resumeRefused, VmService } from '../vm/vm.service.js';
import { initialConvergence, observeConvergence, onStall, type ConvergenceState } from './convergence.js';
import { cancelAction, continueAction } from './transfer-commands.js';
import { figuresOf, progressOf } from './transfer-figures.js';

/** What a post-copy that failed past its point of no return leaves to a human. */
const NEEDS_OPERATOR = 'it needs an operator (resuming the source would run a stale copy of the guest)';

/** How long `cancel` waits for the hypervisor to confirm before replying. */
const CANCEL_WAIT_MS = 3_000;

/** Why the agent asked QEMU to cancel: the transfer ends `Cancelled` for a command, `Failed` otherwise. */
interface CancelCause {
  phase: 'Cancelled' | 'Failed';
  code?: string;
  reason: string;
}

/** An outgoing migration being driven and watched. */
class LiveTransfer {
  readonly cell: StateCell<TransferRecord, TransferEvent>;
  cancel?: CancelCause;
  conv: ConvergenceState;
  /** `performance.now()` when `migrate-start-postcopy` was sent. */
  postcopyRequestedAtMs?: number;
  /** QEMU's status when the post-copy stream broke (postcopy-paused…): the destination had run. */
  postcopyBroken?: string;
  lastProgressEventAt = 0;
  switchoverTimer?: NodeJS.Timeout;
  readonly t0 = Date.now();
  private markDone!: () => void;
  readonly done = new Promise<void>((r) => (this.markDone = r));

  constructor(
    record: TransferRecord,
    persisted: TransferRecord | undefined,
    readonly vm: LiveVm,
    store: HostStore,
  ) {
    this.cell = new StateCell(record, persisted, (next, prev, events) =>
      store.saveTransfer(next, prev, events),
    );
    this.conv = initialConvergence(performance.now());
  }

  get record(): TransferRecord {
    return this.cell.current;
  }

  /** Past the point of no return: the destination runs in post-copy, the source cannot resume. */
  get postcopyCommitted(): boolean {
    return this.record.postcopy?.committedAt !== undefined;
  }

  /** A cancel was asked for (by command or by the agent): nothing may carry the migration on. */
  get cancelling(): boolean {
    return this.cancel !== undefined || this.record.phase === 'Cancelling';
  }

  finish(): void {
    clearTimeout(this.switchoverTimer);
    this.markDone();
  }
}

/** The post-copy stream broke after the destination began to run; CCM does not drive QEMU's recovery. */
const POSTCOPY_BROKEN: ReadonlySet<string> = new Set([
  'postcopy-paused',
  'postcopy-recover-setup',
  'postcopy-recover',
]);

const qmpStatusPhase: Record<string, TransferPhase | undefined> = {
  setup: 'Active',
  active: 'Active',
  'pre-switchover': 'AwaitingSwitchover',
  device: 'SwitchingOver',
  'postcopy-active': 'SwitchingOver',
  cancelling: 'Cancelling',
};

/**
 * Outgoing live migrations: configure (downtime budget, bandwidth cap, auto-converge,
 * pause-before-switchover, SEV transport), `migrate`, then watch query-migrate until the end: progress
 * events, stall detection (no progress for `stallTimeoutMs` → cancel, MIGRATION_STALLED), a bounded
 * pause before switch-over, and the final figures re-read after completion. The source guest runs on
 * after a cancel or failure; after completion its process ends (the guest lives on the destination).
 */
@Injectable()
export class TransferService implements BeforeApplicationShutdown {
  private readonly log = new Logger('Transfers');
  private readonly live = new Map<string, LiveTransfer>();
  private stopping = false;

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: HostAgentConfig,
    private readonly vms: VmService,
    private readonly store: HostStore,
  ) {
    vms.onExit((vm) => {
      for (const t of this.live.values()) {
        if (t.vm === vm && vm.record.phase !== 'MigratedAway') {
          t.cancel ??= {
            phase: 'Failed',
            code: HostErrorCodes.MigrationFailed,
            reason: `the source VM ${vm.record.phase}: ${vm.record.reason ?? ''}`,
          };
        }
      }
    });
  }

  get hostId(): string {
    return this.config.CCM_HOST_ID;
  }

  view(t: LiveTransfer | TransferRecord): TransferView {
    return transferView(this.hostId, t instanceof LiveTransfer ? t.record : t);
  }

  activeFor(vmId: string): LiveTransfer | undefined {
    return [...this.live.values()].find((t) => t.record.vmId === vmId);
  }

  activeCount(): number {
    return this.live.size;
  }

  liveViews(): TransferView[] {
    return [...this.live.values()].map((t) => this.view(t));
  }

  async start(req: {
    migrationId: string;
    vmId: string;
    uri: string;
    downtimeLimitMs?: number;
    maxBandwidthBytesPerSec?: number;
    autoConverge?: boolean;
    pauseBeforeSwitchover?: boolean;
    stallTimeoutMs?: number;
    switchoverTimeoutMs?: number;
    holdSource?: boolean;
    allowPostcopy?: boolean;
    sev?: SevChainBase64;
    step?: string;
  }): Promise<TransferView> {
    return this.vms.exclusive(req.vmId, async (vm) => {
      const known = this.live.get(req.migrationId) ?? (await this.store.loadTransfer(req.migrationId));
      if (known) {
        const r = known instanceof LiveTransfer ? known.record : known;
        if (r.vmId !== req.vmId || r.uri !== req.uri) {
          throw conflict(`migration ${req.migrationId} already exists for VM ${r.vmId} to ${r.uri}`);
        }
        return this.view(known);
      }
      if (!vm) throw notFound(`VM ${req.vmId}`);
      if (vm.record.phase !== 'Running' && vm.record.phase !== 'Paused') {
        throw conflict(`VM ${req.vmId} is ${vm.record.phase}: only a running or paused VM can migrate`);
      }
      // Sending it elsewhere would run its stale copy there, as resuming it would here.
      if (vm.record.resumeBlocked) throw resumeRefused(req.vmId, vm.record.resumeBlocked);
      const other = this.activeFor(req.vmId);
      if (other) throw conflict(`VM ${req.vmId} is already migrating (${other.record.migrationId})`, true);
      if (vm.record.sev && !req.sev) {
        throw new CcmError(
          ErrorCodes.ValidationFailed,
          `VM ${req.vmId} is an SEV guest: start-migration needs the target's chain (sev)`,
          {
            retryable: false,
            effect: 'none',
          },
        );
      }
      const params = this.paramsOf(req);
      const now = new Date();
      const record: TransferRecord = {
        migrationId: req.migrationId,
        vmId: req.vmId,
        phase: 'Starting',
        uri: req.uri,
        params,
        ...(req.step ? { step: req.step } : {}),
        startedAt: now,
        phaseChangedAt: now,
      };
      const t = new LiveTransfer(record, undefined, vm, this.store);
      await t.cell.flush();
      this.live.set(req.migrationId, t);
      const qmp = vm.proc!.qmp;
      try {
        if (vm.record.sev) await this.sevTransport(qmp, vm, req.sev!);
        await configureMigration(qmp, {
          downtimeLimitMs: params.downtimeLimitMs,
          maxBandwidthBytesPerSec: params.maxBandwidthBytesPerSec,
          capabilities: {
            'auto-converge': params.autoConverge,
            'pause-before-switchover': params.pauseBeforeSwitchover,
            // always set: a VM that arrived by post-copy still has it on from its incoming side
            'postcopy-ram': params.allowPostcopy === true,
          },
        });
        await qmp.execute('migrate', { uri: req.uri });
      } catch (err) {
        const e = toCcmError(err, `start migration ${req.migrationId}`);
        await t.cell.update({ phase: 'Failed', errorCode: e.code, reason: e.message, endedAt: new Date() }, [
          { name: 'failed', data: this.base(t, { code: e.code, reason: e.message }) },
        ]);
        this.live.delete(req.migrationId);
        t.finish();
        throw e;
      }
      await t.cell.update({ phase: 'Active' }, [
        { name: 'started', data: this.base(t, { uri: req.uri, params }) },
      ]);
      void this.watch(t, qmp);
      return this.view(t);
    });
  }

  private paramsOf(req: Partial<MigrationParams>): MigrationParams {
    const c = this.config;
    return {
      downtimeLimitMs: req.downtimeLimitMs ?? c.CCM_MIGRATION_DOWNTIME_LIMIT_MS,
      maxBandwidthBytesPerSec: req.maxBandwidthBytesPerSec ?? c.CCM_MIGRATION_MAX_BANDWIDTH_BYTES_PER_SEC,
      autoConverge: req.autoConverge ?? c.CCM_MIGRATION_AUTO_CONVERGE,
      pauseBeforeSwitchover: req.pauseBeforeSwitchover ?? false,
      stallTimeoutMs: req.stallTimeoutMs ?? c.CCM_MIGRATION_STALL_TIMEOUT_MS,
      switchoverTimeoutMs: req.switchoverTimeoutMs ?? c.CCM_SWITCHOVER_TIMEOUT_MS,
      ...(req.holdSource ? { holdSource: true } : {}),
      ...((req.allowPostcopy ?? c.CCM_MIGRATION_ALLOW_POSTCOPY) ? { allowPostcopy: true } : {}),
    };
  }

  /**
   * SEV transport: firmware that migrates itself (the sim; AMD's QEMU on SEV hardware) gets the
   * target's chain as `migrate-set-parameters` sev-pdh/sev-plat-cert/sev-amd-cert and runs SEND_START.
   * Without such firmware the agent runs SEND_START's checks on the software secure processor (target
   * chain, policy); QEMU's RAM stream is then not sealed (there is no SEV hardware to seal it).
   */
  private async sevTransport(qmp: QmpClient, vm: LiveVm, target: SevChainBase64): Promise<void> {
    if (this.vms.driver.firmwareSev) {
      await qmp.executeUnchecked('migrate-set-parameters', {
        'sev-pdh': target.pdh,
        'sev-plat-cert': target.platCert,
        'sev-amd-cert': target.amdCert,
      });
      return;
    }
    if (!vm.agentSev) {
      const lost = vm.agentSevLost;
      throw new CcmError(
        HostErrorCodes.SevUnavailable,
        lost
          ? `the SEV context of ${vm.vmId} was not restored after the agent restarted (${lost.reason}): ${lost.detail}`
          : `VM ${vm.vmId} has no SEV context on this host's secure processor: it cannot be sent`,
        {
          retryable: false,
          effect: 'none',
          details: {
            reason: lost?.reason ?? 'no-context',
            ...(lost?.fault ? { fault: lost.fault } : {}),
          },
        },
      );
    }
    vm.agentSev.sendStart(target);
  }

  /** Polls query-migrate until the end, acting on what it sees, then records the outcome. */
  private async watch(t: LiveTransfer, qmp: QmpClient): Promise<void> {
    let info: MigrationInfo | undefined;
    let error: unknown;
    try {
      info = await awaitMigrationEnd(qmp, {
        pollIntervalMs: this.config.CCM_MIGRATION_POLL_MS,
        timeoutMs: this.config.CCM_MIGRATION_MAX_DURATION_MS,
        onProgress: (i) => this.onSample(t, qmp, i),
      });
    } catch (err) {
      error = err;
    }
    if (this.stopping) return; // drained: the next agent resumes watching
    try {
      await this.conclude(t, qmp, info, error);
    } catch (err) {
      this.log.error(`recording the end of migration ${t.record.migrationId} failed: ${String(err)}`);
    } finally {
      this.live.delete(t.record.migrationId);
      t.finish();
    }
  }

  private onSample(t: LiveTransfer, qmp: QmpClient, info: MigrationInfo): void {
    if (this.stopping) return;
    const status = info.status ?? 'none';
    if (POSTCOPY_BROKEN.has(status)) {
      // QEMU gets here only after the destination ran, whether or not a sample saw postcopy-active:
      // past the point of no return. CCM does not drive QEMU's post-copy recovery: the watch ends here.
      t.postcopyBroken = status;
      void this.commitPostcopy(t);
      throw new CcmError(
        HostErrorCodes.PastPointOfNoReturn,
        `the post-copy stream broke (${status}): ${info['error-desc'] ?? 'no reason given'}`,
        { retryable: false, effect: 'maybe' },
      );
    }
    if (status === 'postcopy-active' && t.record.postcopy && !t.postcopyCommitted)
      void this.commitPostcopy(t);
    const sample = progressOf(info, Date.now() - t.record.startedAt.getTime());
    // Answers without RAM figures (setup, cancelling) keep the last ones that had them.
    const progress = info.ram ? sample : { ...(t.record.progress ?? sample), status };
    // A pre-switchover answer after a cancel (one in flight when it was sent) is not switch-over reached:
    // reporting it would let the saga switch over a migration being cancelled.
    const staleSwitchover =
      status === 'pre-switchover' && (t.record.phase === 'SwitchingOver' || t.cancelling);
    const phase = staleSwitchover ? undefined : qmpStatusPhase[status];
    const events: TransferEvent[] = [];
    if (phase === 'AwaitingSwitchover' && t.record.phase !== 'AwaitingSwitchover') {
      events.push({ name: 'switchover-reached', data: this.base(t, { progress }) });
      t.switchoverTimer = setTimeout(() => {
        this.requestCancel(t, qmp, {
          phase: 'Failed',
          code: HostErrorCodes.SwitchoverTimeout,
          reason: `no continue within ${t.record.params.switchoverTimeoutMs} ms of reaching switch-over`,
        });
      }, t.record.params.switchoverTimeoutMs);
    }
    const now = performance.now();
    if (!t.cancel && !t.postcopyCommitted && t.record.phase !== 'AwaitingSwitchover') {
      const verdict = observeConvergence(
        t.conv,
        {
          atMs: now,
          status,
          transferredBytes: progress.ramTransferredBytes,
          remainingBytes: progress.ramRemainingBytes,
          passes: progress.passes,
        },
        t.record.params.stallTimeoutMs,
      );
      t.conv = verdict.state;
      const action =
        verdict.kind === 'stalled'
          ? onStall(
              verdict.detail,
              { allowed: t.record.params.allowPostcopy === true, requestedAtMs: t.postcopyRequestedAtMs },
              now,
              t.record.params.stallTimeoutMs,
            )
          : undefined;
      if (action?.kind === 'fail') {
        this.requestCancel(t, qmp, {
          phase: 'Failed',
          code: HostErrorCodes.MigrationStalled,
          reason: action.reason,
        });
      } else if (action?.kind === 'start-postcopy') {
        t.postcopyRequestedAtMs = now;
        this.startPostcopy(t, qmp, action.reason, progress);
      }
    }
    const changed =
      phase && phase !== t.record.phase && !(t.record.phase === 'Cancelling' && phase !== 'Cancelling');
    const due = now - t.lastProgressEventAt >= this.config.CCM_PROGRESS_INTERVAL_MS;
    if (changed || due) {
      t.lastProgressEventAt = now;
      events.push(this.progressed(t, progress, changed ? phase : t.record.phase));
    }
    if (changed || due || events.length) {
      void t.cell
        .update({ ...(changed ? { phase } : {}), progress }, events)
        .catch((err: unknown) =>
          this.log.warn(`writing progress of ${t.record.migrationId} failed: ${String(err)}`),
        );
    }
  }

  /**
   * Pre-copy stalled and post-copy is allowed: `migrate-start-postcopy`. With pause-before-switchover
   * QEMU stops the source and pauses (pre-switchover) before the destination runs, so the migration
   * waits for `continue` as a converged one does, and a cancel still resumes the whole source.
   */
  private startPostcopy(
    t: LiveTransfer,
    qmp: QmpClient,
    reason: string,
    progress: ReturnType<typeof progressOf>,
  ): void {
    this.log.warn(`migration ${t.record.migrationId}: switching to post-copy (${reason})`);
    const postcopy = { requestedAt: new Date().toISOString(), reason };
    void t.cell
      .update({ postcopy }, [{ name: 'postcopy-requested', data: this.base(t, { reason, progress }) }])
      .catch((err: unknown) =>
        this.log.warn(`recording post-copy of ${t.record.migrationId} failed: ${String(err)}`),
      );
    qmp.execute('migrate-start-postcopy').catch((err: unknown) => {
      const e = toCcmError(err, `migrate-start-postcopy ${t.record.migrationId}`);
      this.requestCancel(t, qmp, {
        phase: 'Failed',
        code: e.code,
        reason: `post-copy refused: ${e.message}`,
      });
    });
  }

  /** The destination runs in post-copy: the point of no return. */
  private commitPostcopy(t: LiveTransfer): Promise<void> {
    if (!t.record.postcopy || t.postcopyCommitted) return Promise.resolve();
    const postcopy = { ...t.record.postcopy, committedAt: new Date().toISOString() };
    this.log.log(`migration ${t.record.migrationId}: post-copy, past the point of no return`);
    return t.cell
      .update({ postcopy }, [{ name: 'postcopy-committed', data: this.base(t, { postcopy }) }])
      .catch((err: unknown) =>
        this.log.warn(`recording post-copy of ${t.record.migrationId} failed: ${String(err)}`),
      );
  }

  private progressed(t: LiveTransfer, p: ReturnType<typeof progressOf>, phase: TransferPhase): TransferEvent {
    return {
      name: 'progressed',
      data: {
        ...this.base(t, {}),
        step: t.record.step ?? 'migrate',
        stage: `${phase} (${p.status})`,
        round: p.passes,
        bytesTransferred: p.ramTransferredBytes,
        bytesTotal: p.ramTotalBytes,
        remainingBytes: p.ramRemainingBytes,
        dirtyBytesPerSecond: p.dirtyPagesRate * p.pageSizeBytes,
        expectedDowntimeMs: p.expectedDowntimeMs,
        phase,
        progress: p,
      },
    };
  }

  private base<T extends object>(t: LiveTransfer, extra: T) {
    return { migrationId: t.record.migrationId, hostId: this.hostId, vmId: t.record.vmId, ...extra };
  }

  private requestCancel(t: LiveTransfer, qmp: QmpClient, cause: CancelCause): void {
    if (t.cancel) return;
    t.cancel = cause;
    clearTimeout(t.switchoverTimer);
    this.log.warn(
      `migration ${t.record.migrationId}: cancelling (${cause.code ?? 'command'}): ${cause.reason}`,
    );
    qmp
      .execute('migrate_cancel')
      .catch((err: unknown) =>
        this.log.warn(`migrate_cancel of ${t.record.migrationId} failed: ${String(err)}`),
      );
  }

  /** Records the end; completes the move (the source process ends) or makes sure the source runs on. */
  private async conclude(
    t: LiveTransfer,
    qmp: QmpClient,
    info: MigrationInfo | undefined,
    error: unknown,
  ): Promise<void> {
    const vm = t.vm;
    // A cancelled or failed answer has no RAM figures: keep the last sample that had them.
    const progress = info?.ram
      ? progressOf(info, Date.now() - t.record.startedAt.getTime())
      : t.record.progress;
    const endedAt = new Date();
    vm.agentSev?.sendEnd(info?.status === 'completed');
    if (info?.status === 'completed') {
      const figures = figuresOf(info);
      const postcopy = t.record.postcopy;
      await t.cell.update({ phase: 'Completed', figures, progress, endedAt }, [
        { name: 'completed', data: this.base(t, { figures, ...(postcopy ? { postcopy } : {}) }) },
      ]);
      this.log.log(
        `migration ${t.record.migrationId} completed: total ${figures.totalTimeMs} ms, downtime ${figures.downtimeMs} ms`,
      );
      if (this.vms.get(vm.vmId) !== vm) return;
      if (t.record.params.holdSource && !vm.record.sev && !postcopy) {
        // Held for the saga's verify: resumable (rollback) until destroyed (the move is verified).
        await vm.set({
          phase: 'Paused',
          reason: `migrated by ${t.record.migrationId} to ${t.record.uri}; held paused until the move is verified`,
        });
        return;
      }
      await this.vms.endProcess(
        vm,
        'MigratedAway',
        `moved by ${postcopy ? 'post-copy ' : ''}migration ${t.record.migrationId} to ${t.record.uri}`,
      );
      return;
    }
    const cause: CancelCause =
      t.cancel ??
      (info
        ? {
            phase: 'Failed',
            code: HostErrorCodes.MigrationFailed,
            reason: info['error-desc'] ?? `ended ${info.status ?? 'without a status'}`,
          }
        : { phase: 'Failed', ...codeAndReason(error) });
    const committed = t.postcopyCommitted || t.postcopyBroken !== undefined;
    const phase =
      committed || (info?.status === 'failed' && cause.phase === 'Cancelled') ? 'Failed' : cause.phase;
    let reason =
      info?.status === 'failed' && info['error-desc'] && phase === 'Failed' && !t.cancel
        ? info['error-desc']
        : cause.reason;
    if (committed) {
      // Past the point of no return: the guest's memory is split between the hosts; never resume the source.
      reason = `post-copy failed past the point of no return (the source cannot resume): ${reason}; ${NEEDS_OPERATOR}`;
    }
    const code = committed
      ? HostErrorCodes.PastPointOfNoReturn
      : phase === 'Failed'
        ? (cause.code ?? HostErrorCodes.MigrationFailed)
        : undefined;
    await t.cell.update({ phase, progress, endedAt, reason, ...(code ? { errorCode: code } : {}) }, [
      phase === 'Cancelled'
        ? { name: 'cancelled', data: this.base(t, { reason }) }
        : { name: 'failed', data: this.base(t, { code: code!, reason, ...(progress ? { progress } : {}) }) },
    ]);
    this.log.warn(`migration ${t.record.migrationId} ${phase}: ${reason}`);
    if (committed) await this.holdForOperator(t, vm);
    else await this.keepSourceRunning(vm, qmp);
  }

  /**
   * After a failed post-copy the source stays stopped (QEMU keeps it so); its record says why, and
   * `resumeBlocked` makes `resume` (and another migration of it) refuse until an operator acknowledges it.
   */
  private async holdForOperator(t: LiveTransfer, vm: LiveVm): Promise<void> {
    if (this.vms.get(vm.vmId) !== vm || isFinalVmPhase(vm.record.phase)) return;
    const split = `post-copy migration ${t.record.migrationId} to ${t.record.uri} failed past the point of no return`;
    await vm.set({
      phase: 'Paused',
      reason: `${split}: the guest's memory is split between this host and the destination; ${NEEDS_OPERATOR}`,
      resumeBlocked: {
        migrationId: t.record.migrationId,
        reason: `${split} (${t.postcopyBroken ?? 'failed'}): the destination may hold part of the guest's state`,
        since: new Date().toISOString(),
      },
    });
  }

  /** After a cancel or failure QEMU resumes a guest it stopped; make sure, and keep the VM's phase. */
  private async keepSourceRunning(vm: LiveVm, qmp: QmpClient): Promise<void> {
    if (this.vms.get(vm.vmId) !== vm || vm.record.phase !== 'Running') return;
    const st = await qmp.execute('query-status').catch(() => undefined);
    if (
      st &&
      !st.running &&
      (st.status === 'paused' || st.status === 'postmigrate' || st.status === 'finish-migrate')
    ) {
      await qmp
        .execute('cont')
        .catch((err: unknown) => this.log.error(`could not resume ${vm.vmId}: ${String(err)}`));
    }
  }

  /** A migration's record as the agent knows it now (watched or filed), undefined when unknown. */
  async current(migrationId: string): Promise<TransferRecord | undefined> {
    return this.live.get(migrationId)?.record ?? (await this.store.loadTransfer(migrationId));
  }

  /** A migration as the agent knows it: watched (with its live state) or filed. */
  private async find(migrationId: string): Promise<{ t?: LiveTransfer; record: TransferRecord }> {
    const t = this.live.get(migrationId);
    const record = t?.record ?? (await this.store.loadTransfer(migrationId));
    if (!record) throw notFound(`migration ${migrationId}`);
    return { t, record };
  }

  async continue(migrationId: string): Promise<TransferView> {
    const { t, record } = await this.find(migrationId);
    if (continueAction(migrationId, record.phase) === 'answer') return this.view(record);
    if (!t) throw conflict(`migration ${migrationId} is ${record.phase} but not watched yet`, true);
    if (t.cancel) throw conflict(`migration ${migrationId} is being cancelled: ${t.cancel.reason}`);
    try {
      await t.vm.proc!.qmp.execute('migrate-continue', { state: 'pre-switchover' });
    } catch (err) {
      throw toCcmError(err, `switch over ${migrationId}`);
    }
    clearTimeout(t.switchoverTimer);
    await t.cell.update({ phase: 'SwitchingOver' });
    if (t.record.postcopy) await this.commitPostcopy(t);
    return this.view(t);
  }

  /** Cancels and waits (a little) for the hypervisor to confirm; the source guest runs on. */
  async cancel(migrationId: string, reason = 'cancelled by command'): Promise<TransferView> {
    const { t, record } = await this.find(migrationId);
    const committed = record.postcopy?.committedAt !== undefined;
    if (cancelAction(migrationId, record.phase, committed) === 'answer' || !t) return this.view(record);
    this.requestCancel(t, t.vm.proc!.qmp, { phase: 'Cancelled', reason });
    void t.cell.update({ phase: 'Cancelling' });
    // Bounded well inside a caller's request timeout: the reply says Cancelling if QEMU is slower.
    await Promise.race([t.done, new Promise((r) => setTimeout(r, CANCEL_WAIT_MS))]);
    return this.view(t);
  }

  /**
   * After a restart: picks up the migrations that were running. One whose source VM was re-adopted is
   * watched again (QEMU kept migrating); one whose VM is gone failed while the agent was down.
   */
  async resume(): Promise<void> {
    for (const r of await this.store.loadLiveTransfers()) {
      const vm = this.vms.get(r.vmId);
      const t = new LiveTransfer(r, r, vm!, this.store);
      if (!vm?.proc) {
        await t.cell.update(
          {
            phase: 'Failed',
            errorCode: HostErrorCodes.MigrationFailed,
            reason: 'the source VM ended while the host-agent was down',
            endedAt: new Date(),
          },
          [
            {
              name: 'failed',
              data: this.base(t, {
                code: HostErrorCodes.MigrationFailed,
                reason: 'the source VM ended while the host-agent was down',
              }),
            },
          ],
        );
        continue;
      }
      this.live.set(r.migrationId, t);
      this.log.log(`migration ${r.migrationId} of ${r.vmId}: watching again after a restart`);
      void this.watch(t, vm.proc.qmp);
    }
  }

  /** Drain: stop watching before the QMP connections close; QEMU keeps migrating, the next agent watches. */
  beforeApplicationShutdown(): void {
    this.stopping = true;
    for (const t of this.live.values()) clearTimeout(t.switchoverTimer);
  }
}

function codeAndReason(err: unknown): { code: string; reason: string } {
  const e = toCcmError(err, 'watching the migration');
  return {
    code: e.code === HostErrorCodes.HypervisorGone ? HostErrorCodes.MigrationFailed : e.code,
    reason: e.message,
  };
}
