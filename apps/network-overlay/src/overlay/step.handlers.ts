import { Injectable } from '@nestjs/common';
import { CcmError, ErrorCodes, STEP_COMMANDS, subjects, type StepCommand } from '@ccm/contracts';
import { OnRequest, type MessageContext } from '@ccm/messaging';
import { type EntityManager } from 'typeorm';
import { OverlayEvents, type EventCause } from './events.js';
import { OverlayService } from './overlay.service.js';
import * as db from './store.js';

const STEPS = STEP_COMMANDS['network-overlay'];
const step = (verb: keyof typeof STEPS) =>
  OnRequest({
    subject: subjects.cmd('network-overlay', verb),
    schema: STEPS[verb].request,
    idempotent: true,
    allow: ['saga-coordinator'],
  });

/**
 * The container and VM sagas' overlay steps (STEP_COMMANDS['network-overlay']). Each acts at most
 * once per migration: cut-over and its revert are keyed by the migration's move row, add-peer and
 * remove-peer by the peer's presence; a retry under a new attempt finds the work done.
 */
@Injectable()
export class StepHandlers {
  constructor(
    private readonly overlays: OverlayService,
    private readonly events: OverlayEvents,
  ) {}

  /** Admits the target guest on the key-broker's statement the coordinator carries in the context. */
  @step('add-peer')
  async addPeer(cmd: StepCommand, ctx: MessageContext) {
    const m = ctx.manager!;
    const w = await this.workload(m, cmd);
    const target = cmd.context.targetVmId!;
    if (!(await db.peerRow(m, w.overlayId, target))) {
      if (!cmd.context.overlayAdmission) {
        throw new CcmError(ErrorCodes.Refused, `no key-broker admission statement for ${target}`, {
          retryable: false,
          effect: 'none',
          details: { reason: 'no-statement' },
        });
      }
      await this.overlays.admit(m, w.overlayId, cmd.context.overlayAdmission, cause(cmd, ctx), target);
    }
    return { peerId: target, overlayIp: w.ip, overlayId: w.overlayId };
  }

  @step('remove-peer')
  async removePeer(cmd: StepCommand, ctx: MessageContext) {
    const m = ctx.manager!;
    const target = cmd.context.targetVmId;
    const w = await db.workloadRow(m, cmd.workload.id);
    if (!target || !w) return { removed: false };
    return { removed: await this.overlays.removePeer(m, w.overlayId, target) };
  }

  @step('cut-over')
  async cutOver(cmd: StepCommand, ctx: MessageContext) {
    const m = ctx.manager!;
    await oneMoveAtATime(m, cmd.migrationId);
    const done = await db.moveRow(m, cmd.migrationId);
    if (done?.state === 'moved') return { overlayIp: done.ip, ...done.figures };
    if (done?.state === 'reverted') {
      // The coordinator compensated this cut-over already (it gave up on an attempt): a late attempt
      // must not move the /32 back to a target that is being taken down.
      throw new CcmError(ErrorCodes.Conflict, `the cut-over of ${cmd.migrationId} was reverted already`, {
        retryable: false,
        effect: 'none',
      });
    }
    const w = await this.workload(m, cmd);
    const target = cmd.context.targetVmId!;
    if (w.holder === target) {
      throw new CcmError(ErrorCodes.Conflict, `${w.ip} is on ${target} already, not through this migration`, {
        retryable: false,
        effect: 'none',
      });
    }
    const figures = await this.overlays.move(m, w, target);
    await db.saveMove(m, moveOf(cmd, w, target, 'moved', figures));
    const moved = { overlayId: w.overlayId, workloadId: w.workloadId, ip: w.ip, from: w.holder, to: target };
    await this.events.record(m, 'cut-over-done', { ...moved, ...figures }, cause(cmd, ctx));
    return { overlayIp: w.ip, ...figures };
  }

  @step('revert-cut-over')
  async revertCutOver(cmd: StepCommand, ctx: MessageContext) {
    const m = ctx.manager!;
    await oneMoveAtATime(m, cmd.migrationId);
    const row = await db.moveRow(m, cmd.migrationId);
    if (row?.state === 'reverted') return { reverted: false };
    if (!row) {
      // Nothing moved yet: leave a reverted mark, so an attempt of the cut-over still on its way
      // (sent before the coordinator gave up on it) finds it and does not move anything.
      const w = await db.workloadRow(m, cmd.workload.id);
      if (w) {
        const none = { cutOverMs: 0, brownoutMs: null, sourceAnswered: true, peersUpdated: 0 };
        await db.saveMove(m, moveOf(cmd, w, cmd.context.targetVmId ?? w.holder, 'reverted', none));
      }
      return { reverted: false };
    }
    const w = (await db.workloadRow(m, row.workloadId))!;
    const figures = await this.overlays.move(m, w, row.source);
    await db.saveMove(m, { ...row, state: 'reverted', figures: row.figures });
    const moved = {
      overlayId: row.overlayId,
      workloadId: row.workloadId,
      ip: row.ip,
      from: w.holder,
      to: row.source,
    };
    await this.events.record(m, 'cut-over-reverted', { ...moved, ...figures }, cause(cmd, ctx));
    return { reverted: true, overlayIp: row.ip, revert: figures };
  }

  /** The coordinator's verify step: the workload answers at its /32 from a peer other than its holder. */
  @step('probe-workload')
  async probe(cmd: StepCommand, ctx: MessageContext) {
    const m = ctx.manager!;
    const w = await this.workload(m, cmd);
    const move = await db.moveRow(m, cmd.migrationId);
    const hit = await this.overlays.probe(m, w, move?.source);
    if (!hit.answered) {
      const { answered: _, ...found } = hit;
      const why =
        hit.reason === 'overlay-path'
          ? `answers on ${w.holder} but not from ${hit.triedFrom}`
          : `does not answer, not even on ${w.holder}`;
      throw new CcmError(ErrorCodes.Unavailable, `workload ${w.workloadId} at ${w.ip}:${w.port} ${why}`, {
        retryable: true,
        effect: 'none',
        details: { holder: w.holder, ...found },
      });
    }
    return {
      ...hit,
      overlayIp: w.ip,
      ...(move ? { brownoutMs: move.figures.brownoutMs } : {}),
    };
  }

  private async workload(m: EntityManager, cmd: StepCommand): Promise<db.WorkloadRow> {
    const w = await db.workloadRow(m, cmd.workload.id);
    if (!w) {
      throw new CcmError(ErrorCodes.NotFound, `workload ${cmd.workload.id} has no overlay address`, {
        retryable: false,
        effect: 'none',
      });
    }
    return w;
  }
}

/** The migration's move of a workload's /32 from its holder to `target`. */
function moveOf(
  cmd: StepCommand,
  w: db.WorkloadRow,
  target: string,
  state: db.MoveRow['state'],
  figures: db.MoveRow['figures'],
): db.MoveRow {
  return {
    migrationId: cmd.migrationId,
    overlayId: w.overlayId,
    workloadId: w.workloadId,
    ip: w.ip,
    source: w.holder,
    target,
    state,
    figures,
  };
}

/** Serializes a migration's cut-over and its revert across handlers and replicas (transaction-scoped). */
async function oneMoveAtATime(m: EntityManager, migrationId: string): Promise<void> {
  await m.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`overlay-move:${migrationId}`]);
}

/** A saga step's change belongs to its migration. */
function cause(cmd: StepCommand, ctx: MessageContext): EventCause {
  return { causationId: ctx.envelope.id, migrationId: cmd.migrationId };
}
