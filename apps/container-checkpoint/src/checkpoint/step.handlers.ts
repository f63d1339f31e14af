import { Injectable } from '@nestjs/common';
import {
  CcmError,
  CheckpointErrorCodes,
  ErrorCodes,
  STEP_COMMANDS,
  subjects,
  type StepCommand,
} from '@ccm/contracts';
import { OnRequest, OutboxService, type MessageContext } from '@ccm/messaging';
import { CheckpointService, type StepRun } from './checkpoint.service.js';
import * as db from './store.js';

const STEPS = STEP_COMMANDS['container-checkpoint'];
type Verb = keyof typeof STEPS;
const step = (verb: Verb) =>
  OnRequest({
    subject: subjects.cmd('container-checkpoint', verb),
    schema: STEPS[verb].request,
    idempotent: true,
    allow: ['saga-coordinator'],
  });

const refuse = (code: string, message: string, details?: Record<string, unknown>) =>
  new CcmError(code, message, { retryable: false, effect: 'none', ...(details ? { details } : {}) });

/**
 * The container saga's checkpoint steps (STEP_COMMANDS['container-checkpoint']). Each acts at most
 * once per (migration, step, kind): the migration's row lock runs one of its steps at a time, and a
 * step that succeeded stores its reply, which a retry under a new attempt number gets back. Actions
 * name the source guest (`context.sourceVmId`) and the target (`context.targetVmId`); compensations
 * find them by migration id, and one for a migration never seen here has nothing to undo.
 */
@Injectable()
export class CheckpointSteps {
  constructor(
    private readonly cp: CheckpointService,
    private readonly outbox: OutboxService,
  ) {}

  @step('pre-copy')
  preCopy(cmd: StepCommand, ctx: MessageContext) {
    return this.action(cmd, ctx, (r) => this.cp.preCopy(r));
  }

  @step('freeze-dump')
  freezeDump(cmd: StepCommand, ctx: MessageContext) {
    return this.action(cmd, ctx, (r) => this.cp.freezeDump(r));
  }

  @step('restore')
  restore(cmd: StepCommand, ctx: MessageContext) {
    return this.action(cmd, ctx, (r) => this.cp.restore(r));
  }

  @step('commit')
  commit(cmd: StepCommand, ctx: MessageContext) {
    return this.once(cmd, ctx, 'existing', (r) => this.cp.commit(r));
  }

  @step('discard-images')
  discardImages(cmd: StepCommand, ctx: MessageContext) {
    return this.once(cmd, ctx, 'optional', (r) => this.cp.discardImages(r));
  }

  @step('thaw-source')
  thawSource(cmd: StepCommand, ctx: MessageContext) {
    return this.once(cmd, ctx, 'optional', (r) => this.cp.thawSource(r));
  }

  @step('kill-target')
  killTarget(cmd: StepCommand, ctx: MessageContext) {
    return this.once(cmd, ctx, 'optional', (r) => this.cp.killTarget(r));
  }

  /** An action: the context must name both guests; the migration's row is made on first sight. */
  private async action(cmd: StepCommand, ctx: MessageContext, fn: (r: StepRun) => Promise<object>) {
    if (cmd.workload.kind !== 'container') {
      throw refuse(
        CheckpointErrorCodes.NotAContainer,
        `${cmd.workload.id} is a ${cmd.workload.kind}, not a container`,
      );
    }
    const { sourceVmId, targetVmId } = cmd.context;
    if (!sourceVmId) {
      throw refuse(
        CheckpointErrorCodes.NoSourceVm,
        `${cmd.step}: the command's context has no sourceVmId (vm-lifecycle's provision-vm supplies the guest that runs ${cmd.workload.id})`,
      );
    }
    if (!targetVmId)
      throw refuse(ErrorCodes.ValidationFailed, `${cmd.step}: the command's context has no targetVmId`);
    if (sourceVmId === targetVmId) {
      throw refuse(
        ErrorCodes.ValidationFailed,
        `${cmd.step}: source and target are the same guest ${sourceVmId}`,
      );
    }
    const row = await this.outbox.transaction((m) =>
      db.ensureCheckpoint(m, {
        migrationId: cmd.migrationId,
        containerId: cmd.workload.id,
        sourceVm: sourceVmId,
        targetVm: targetVmId,
      }),
    );
    if (row.containerId !== cmd.workload.id || row.sourceVm !== sourceVmId || row.targetVm !== targetVmId) {
      throw refuse(
        ErrorCodes.Conflict,
        `migration ${cmd.migrationId} moves ${row.containerId} from ${row.sourceVm} to ${row.targetVm}, not ${cmd.workload.id} from ${sourceVmId} to ${targetVmId}`,
      );
    }
    return this.once(cmd, ctx, 'existing', fn);
  }

  /**
   * Runs `fn` once per (migration, step, kind) under the migration's row lock. `optional`: a
   * compensation for a migration this service never acted on has nothing to undo.
   */
  private async once(
    cmd: StepCommand,
    ctx: MessageContext,
    need: 'existing' | 'optional',
    fn: (r: StepRun) => Promise<object>,
  ): Promise<Record<string, unknown>> {
    const m = ctx.manager!;
    const row = await db.checkpointRow(m, cmd.migrationId, true);
    if (!row) {
      if (need === 'optional') return { nothingToUndo: true };
      throw new CcmError(ErrorCodes.NotFound, `no checkpoint of migration ${cmd.migrationId} here`, {
        retryable: false,
        effect: 'none',
      });
    }
    const done = await db.stepResult(m, cmd.migrationId, cmd.step, cmd.kind);
    if (done) return done;
    const cause = { migrationId: cmd.migrationId, causationId: ctx.envelope.id };
    const result = { ...(await fn({ m, row, step: cmd.step, cause })) } as Record<string, unknown>;
    await db.saveStepResult(m, cmd.migrationId, cmd.step, cmd.kind, result);
    return result;
  }
}
