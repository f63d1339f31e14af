import { Inject, Injectable } from '@nestjs/common';
import {
  CcmError,
  ContainerInfoSchema,
  ErrorCodes,
  GUEST_VERBS,
  GuestErrorCodes,
  ReceiveReplySchema,
  RoundReportSchema,
  progressSubjects,
  type CheckpointRound,
  type DataPlaneProgress,
  type GuestVerb,
} from '@ccm/contracts';
import { OutboxService } from '@ccm/messaging';
import { Phases, SERVICE_CONFIG } from '@ccm/runtime';
import { type EntityManager } from 'typeorm';
import { z } from 'zod';
import { type CheckpointConfig } from '../config.js';
import {
  type Cause,
  type EffectOf,
  Guests,
  isGone,
  refusedDidNothing,
  refusedUnlessRestored,
} from './guests.js';
import { roundProgress } from './progress.js';
import * as db from './store.js';

const DiscardReplySchema = z.object({ rounds: z.number().int() }).loose();

/** The final dump's frozen-window timing, filled by {@link CheckpointService.round}. */
interface DumpTiming {
  readonly p: Phases;
  frozenAt?: Date;
  source?: Record<string, number>;
}

/** What one step does with a migration's checkpoint; `cause` names the step command. */
export interface StepRun {
  readonly m: EntityManager;
  readonly row: db.CheckpointRow;
  readonly step: string;
  readonly cause: Cause;
}

/**
 * The checkpoint engine: drives the source and target guest-agents through iterative pre-copy, the
 * final dump, restore and resume, and the compensations. Rounds are recorded (with a progress event)
 * in a transaction of their own as each completes, so a retried pre-copy goes on from the next round
 * and the coordinator sees progress while the step still runs.
 */
@Injectable()
export class CheckpointService {
  constructor(
    private readonly guests: Guests,
    private readonly outbox: OutboxService,
    @Inject(SERVICE_CONFIG) private readonly config: CheckpointConfig,
  ) {}

  /** Pre-dump rounds streamed to the target until a round leaves few dirty pages or the round limit. */
  async preCopy(run: StepRun) {
    const { row, cause } = run;
    const threshold = this.config.CCM_CHECKPOINT_DIRTY_THRESHOLD_PAGES;
    const limit = this.config.CCM_CHECKPOINT_MAX_ROUNDS;
    const src = await this.onContainer(row.sourceVm, GUEST_VERBS.describe, row, cause, 'none');
    const done = (await db.rounds(run.m, row.migrationId)).filter((r) => r.kind === 'pre-dump');
    if (src.state !== 'running' && done.length === 0) {
      throw new CcmError(GuestErrorCodes.BadContainerState, `container ${row.containerId} is ${src.state}`, {
        retryable: false,
        effect: 'none',
        details: { state: src.state, vmId: row.sourceVm },
      });
    }
    const converged = () => (done.at(-1)?.dirtyPages ?? Infinity) <= threshold;
    while (!converged() && done.length < limit) {
      done.push(await this.round(run, done.length + 1, 'pre-dump', done));
    }
    return {
      rounds: done.length,
      bytesSent: sum(done, 'imageBytes'),
      pagesSent: sum(done, 'pages'),
      converged: converged(),
      dirtyPages: done.at(-1)?.dirtyPages ?? src.pages,
      threshold,
      roundLimit: limit,
      perRound: done,
    };
  }

  /** Freezes the source and streams the final dump (the round after the last pre-dump). */
  async freezeDump(run: StepRun) {
    const { row } = run;
    const all = await db.rounds(run.m, row.migrationId);
    const timing: DumpTiming = { p: new Phases() };
    const final =
      all.find((r) => r.kind === 'dump') ?? (await this.round(run, all.length + 1, 'dump', all, timing));
    await timing.p.time('markDumped', () => db.markDumped(run.m, row.migrationId, final.round));
    return {
      imageBytes: final.imageBytes,
      round: final.round,
      pages: final.pages,
      durationMs: final.durationMs,
      totalImageBytes: sum(all, 'imageBytes') + (all.includes(final) ? 0 : final.imageBytes),
      // The frozen window so far, in parts (absent when the dump was done by an earlier attempt).
      ...(timing.frozenAt
        ? {
            frozenSoFarMs: Date.now() - timing.frozenAt.getTime(),
            phasesMs: timing.p.ms,
            ...(timing.source ? { sourcePhasesMs: timing.source } : {}),
          }
        : {}),
    };
  }

  /**
   * Restores the container at the target from every round and resumes it there: the frozen time runs
   * from the freeze to this resume (docs/container-checkpoint.md says why resume belongs here).
   */
  async restore(run: StepRun) {
    const { row, cause } = run;
    if (row.finalRound === null) {
      throw new CcmError(ErrorCodes.Conflict, `migration ${row.migrationId} has no final dump to restore`, {
        retryable: false,
        effect: 'none',
      });
    }
    // One guest call restores and resumes (`resume: true`); a guest that left it restored (one
    // without the option) is resumed by a second call.
    const args = {
      migrationId: row.migrationId,
      containerId: row.containerId,
      rounds: row.finalRound,
      resume: true,
    };
    const frozenBeforeMs = row.frozenAt ? Date.now() - new Date(row.frozenAt).getTime() : undefined;
    const p = new Phases();
    const restored = await p.time('restoreCall', () =>
      this.guests.call(
        row.targetVm,
        GUEST_VERBS.restore,
        args,
        ContainerInfoSchema,
        cause,
        refusedUnlessRestored,
      ),
    );
    const resumed =
      restored.state === 'restored'
        ? await p.time('resumeCall', () =>
            this.onContainer(row.targetVm, GUEST_VERBS.resume, row, cause, 'maybe'),
          )
        : { ...restored, phasesMs: restored.resumePhasesMs };
    const at = new Date();
    const frozenMs = row.frozenAt ? Math.max(0, at.getTime() - new Date(row.frozenAt).getTime()) : null;
    await db.markResumed(run.m, row.migrationId, at, frozenMs);
    await this.progress(run.m, run, {
      stage: 'resumed at target',
      round: row.finalRound,
      bytesTransferred: sum(await db.rounds(run.m, row.migrationId), 'imageBytes'),
    });
    return {
      containerId: row.containerId,
      targetVmId: row.targetVm,
      state: resumed.state,
      counter: resumed.counter,
      rounds: row.finalRound,
      frozenMs,
      // The frozen window's parts from this step on: how much of it had passed when the step began,
      // the two guest calls, and the target's own parts of each.
      ...(frozenBeforeMs !== undefined ? { frozenBeforeMs } : {}),
      phasesMs: p.ms,
      ...(restored.phasesMs ? { targetRestorePhasesMs: restored.phasesMs } : {}),
      ...(resumed.phasesMs ? { targetResumePhasesMs: resumed.phasesMs } : {}),
    };
  }

  /** Compensates freeze-dump: the source container runs on (a running one is left as it is). */
  async thawSource({ row, cause }: StepRun) {
    const c = await this.onContainer(row.sourceVm, GUEST_VERBS.thaw, row, cause, 'maybe');
    return { containerId: row.containerId, sourceVmId: row.sourceVm, state: c.state, counter: c.counter };
  }

  /**
   * Compensates restore: kills the target's container, only when it is the one this migration
   * restored. A target guest-agent that no longer runs holds no container of ours (the provision
   * step's destroy-vm removes its VM).
   */
  async killTarget({ row, cause }: StepRun) {
    const info = await this.onContainer(row.targetVm, GUEST_VERBS.describe, row, cause, 'none').catch(
      (e: unknown) => {
        if (e instanceof CcmError && (e.code === ErrorCodes.NotFound || isGone(e))) return undefined;
        throw e;
      },
    );
    if (!info || info.migrationId !== row.migrationId || info.state === 'killed') {
      return {
        killed: false,
        reason: !info ? 'no container at the target' : 'not restored by this migration',
      };
    }
    const c = await this.onContainer(row.targetVm, GUEST_VERBS.kill, row, cause, 'maybe');
    return { killed: true, state: c.state };
  }

  /** Compensates pre-copy: both guests drop the migration's images and key. */
  async discardImages({ row, cause }: StepRun) {
    const target = await this.discard(row.targetVm, row, cause).catch((e: unknown) => {
      // A target guest-agent that is gone took its in-memory images with it.
      if (e instanceof CcmError && isGone(e)) return 'guest-not-running' as const;
      throw e;
    });
    return { discarded: { source: await this.discard(row.sourceVm, row, cause), target } };
  }

  /**
   * After verify: kills the source container and drops both guests' images, but never while the
   * target does not run the container this migration restored (that would leave it nowhere).
   */
  async commit({ row, cause }: StepRun) {
    const at = await this.onContainer(row.targetVm, GUEST_VERBS.describe, row, cause, 'none');
    if (at.state !== 'running' || at.migrationId !== row.migrationId) {
      throw new CcmError(
        ErrorCodes.Conflict,
        `the target ${row.targetVm} does not run ${row.containerId} from this migration (${at.state}): the source is kept`,
        { retryable: false, effect: 'none', details: { state: at.state } },
      );
    }
    const killed = await this.onContainer(row.sourceVm, GUEST_VERBS.kill, row, cause, 'maybe')
      .then((c) => c.state)
      .catch((e: unknown) => {
        if (e instanceof CcmError && e.code === ErrorCodes.NotFound) return 'gone' as const;
        throw e;
      });
    await this.discard(row.sourceVm, row, cause);
    await this.discard(row.targetVm, row, cause);
    return { source: killed, targetCounter: at.counter, frozenMs: row.frozenMs };
  }

  /** A guest command about the migration's container (`{ id }`), answered with its state. */
  private onContainer(vm: string, verb: GuestVerb, row: db.CheckpointRow, cause: Cause, effect: EffectOf) {
    return this.guests.call(vm, verb, { id: row.containerId }, ContainerInfoSchema, cause, effect);
  }

  /** A guest drops the migration's images and key; how many rounds it held. */
  private async discard(vm: string, row: db.CheckpointRow, cause: Cause): Promise<number> {
    const r = await this.guests.call(
      vm,
      GUEST_VERBS.discard,
      { migrationId: row.migrationId },
      DiscardReplySchema,
      cause,
      'maybe',
    );
    return r.rounds;
  }

  /** One round: the target listens, the source sends (pre-dump or final dump); recorded at once. */
  private async round(
    run: StepRun,
    round: number,
    kind: CheckpointRound['kind'],
    before: readonly CheckpointRound[],
    timing?: DumpTiming,
  ): Promise<CheckpointRound> {
    const { row, cause } = run;
    const ref = { migrationId: row.migrationId, containerId: row.containerId, round };
    // Parts of the frozen window are kept for the dump's figures; a pre-dump's are timed and dropped.
    const phases = timing?.p ?? new Phases();
    const first = before.length === 0;
    const target = await this.guests.call(
      row.targetVm,
      GUEST_VERBS.receive,
      ref,
      ReceiveReplySchema,
      cause,
      first || kind === 'dump' ? refusedDidNothing : 'maybe',
    );
    // The source freezes as the dump starts: the frozen time counts from the first such moment.
    if (kind === 'dump') {
      const frozenAt = new Date();
      if (timing) timing.frozenAt = frozenAt;
      await phases.time('markFrozen', () =>
        this.outbox.transaction((m) => db.markFrozen(m, row.migrationId, frozenAt)),
      );
    }
    const verb = kind === 'dump' ? GUEST_VERBS.dump : GUEST_VERBS.preDump;
    const report = await phases.time('dumpCall', () =>
      this.guests.call(row.sourceVm, verb, { ...ref, target }, RoundReportSchema, cause, 'maybe'),
    );
    if (timing && report.phasesMs) timing.source = report.phasesMs;
    const r: CheckpointRound = {
      round,
      kind,
      pages: report.pages,
      imageBytes: report.imageBytes,
      chunks: report.chunks,
      durationMs: report.durationMs,
      dirtyPages: report.dirtyPages,
    };
    await phases.time('record', () =>
      this.outbox.transaction(async (m) => {
        await db.saveRound(m, row.migrationId, r);
        await this.progress(m, run, roundProgress(before, r));
      }),
    );
    return r;
  }

  /** `ccm.evt.checkpoint.<migrationId>.progressed`, which the coordinator forwards as `progressed`. */
  private async progress(
    m: EntityManager,
    run: StepRun,
    p: Omit<DataPlaneProgress, 'migrationId' | 'step' | 'at'>,
  ): Promise<void> {
    const data: DataPlaneProgress = {
      migrationId: run.row.migrationId,
      step: run.step,
      ...p,
      at: new Date().toISOString(),
    };
    await this.outbox.enqueue(m, progressSubjects.checkpoint(run.row.migrationId), {
      type: 'ccm.checkpoint.progressed',
      data,
      causationid: run.cause.causationId,
      correlationid: run.row.migrationId,
    });
  }
}

function sum(rounds: readonly CheckpointRound[], k: 'imageBytes' | 'pages'): number {
  return rounds.reduce((a, r) => a + r[k], 0);
}
