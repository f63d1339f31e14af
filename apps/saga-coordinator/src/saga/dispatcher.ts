import { Inject, Injectable, Logger } from '@nestjs/common';
import { CcmError, ErrorCodes, isCcmError, stepFailureEffect, validationError } from '@ccm/contracts';
import { MessageBus } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { SERVICE_CONFIG } from '@ccm/runtime';
import {
  Participant,
  type SagaFact,
  type SagaState,
  type SendAction,
  type SendCompensation,
} from '@ccm/saga';
import { errors } from '@nats-io/transport-node';
import { type DataSource } from 'typeorm';
import { z } from 'zod';
import { lockForRelease } from '../admission/lock.js';
import { type CoordinatorConfig } from '../config.js';
import { updateReturning } from '@ccm/persistence';
import { CLOCK, MIGRATION } from '../db/schema.js';
import { buildCommand } from './step-commands.js';
import { type SagaRow } from './store.js';
import { readSourceVm } from './vm-admission.js';
import { notify } from './wakeups.js';

type Send = SendAction | SendCompensation;

/** The verbs the coordinator carries out itself (its own steps in both sagas). */
export const LocalVerb = {
  /** Confirms the admission slot and the workload lock taken when the saga was admitted. */
  Admit: 'admit',
  /** Gives the slot back (compensation of admit) so the next queued migration may start. */
  ReleaseAdmission: 'release-admission',
  /**
   * The pivot: a container is probed by network-overlay at its overlay IP; a VM by the target
   * host-agent, which watches the destination guest make progress.
   */
  VerifyWorkload: 'verify-workload',
} as const;

/** Where the coordinator's `verify` step is delegated, by workload kind. */
export const VERIFY_DELEGATE = {
  /** The overlay can reach the container's /32. */
  container: { participant: 'network-overlay', verb: 'probe-workload' },
  /** The target host sees the destination guest's console: its counter must advance. */
  vm: { participant: 'host-agent', verb: 'verify-vm' },
} as const;

/**
 * Carries out one send decision and reports what was observed as a fact: success, a typed failure
 * (with whether it may have taken effect), or a timeout. Remote commands go over NATS with the
 * engine's idempotency key and wait at most until the attempt's deadline; one unanswered for
 * `CCM_STEP_RESEND_MS` is sent again with the same key (see {@link StepDispatcher.remote}).
 */
@Injectable()
export class StepDispatcher {
  private readonly log = new Logger('StepDispatcher');

  constructor(
    private readonly bus: MessageBus,
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
    @Inject(SERVICE_CONFIG) private readonly config: CoordinatorConfig,
  ) {}

  /**
   * Carries out `d`; undefined when the outcome cannot be known (the connection closed under the
   * request, e.g. while this replica drains): the attempt stays in flight for its timeout or the next
   * lease holder's re-send, never turned into a failure it may not be.
   */
  async perform(row: SagaRow, state: SagaState, d: Send): Promise<SagaFact | undefined> {
    try {
      if (d.participant !== Participant.Coordinator) return success(d, await this.remote(row, state, d));
      switch (d.command) {
        case LocalVerb.Admit:
          return success(d, await this.admit(row, d));
        case LocalVerb.ReleaseAdmission:
          return success(d, await this.release(row.id));
        case LocalVerb.VerifyWorkload:
          return success(d, await this.remote(row, state, d, VERIFY_DELEGATE[row.kind]));
        default:
          throw new CcmError(ErrorCodes.Internal, `the coordinator has no local verb ${d.command}`, {
            retryable: false,
          });
      }
    } catch (err) {
      return this.failure(row, d, err);
    }
  }

  /**
   * Sends the command and waits for its reply until the attempt's deadline, sending it again with
   * the same idempotency key each `CCM_STEP_RESEND_MS` it stays unanswered. A participant killed
   * with the command lost it; restarted by its supervisor (or as another replica) it takes the
   * repeat and acts, or finds the effect and reply it stored; one still working on it joins the
   * repeat to the run in hand. Nobody listening to a repeat (the participant is still down) is
   * waited out the same way: the first send may have acted, so it is no proof of no effect.
   */
  private async remote(
    row: SagaRow,
    state: SagaState,
    d: Send,
    target?: { participant: string; verb: string },
  ): Promise<unknown> {
    const cmd = buildCommand(row, state, d, target);
    const raw = await this.bus.request(cmd.subject, cmd.payload, z.unknown(), {
      timeoutMs: Math.max(1, d.deadlineAt - Date.now()),
      idempotencyKey: d.idempotencyKey,
      correlationId: row.id,
      resendEveryMs: this.config.CCM_STEP_RESEND_MS,
      // A long step (a large pre-copy) is re-sent many times while its participant works: debug only.
      onResend: (send) =>
        this.log.debug(`${row.id} ${d.step}: no reply to ${d.idempotencyKey}; sending it again (${send})`),
    });
    const reply = cmd.contract.reply.safeParse(raw);
    if (!reply.success) throw new InvalidReplyError(cmd.subject, reply.error.issues);
    return reply.data;
  }

  /** Confirms the slot; for a VM also reads what the destination needs from the source host. */
  private async admit(row: SagaRow, d: Send): Promise<unknown> {
    const slot = await this.confirmSlot(row.id);
    if (row.kind !== 'vm') return slot;
    return { ...slot, ...(await readSourceVm(this.bus, row, Math.max(1, d.deadlineAt - Date.now()))) };
  }

  private async confirmSlot(id: string): Promise<Record<string, unknown>> {
    const rows = await this.ds.query<
      Array<{
        admitted_at: Date | null;
        waited_ms: number;
        source_vm: string | null;
        allow_postcopy: boolean | null;
      }>
    >(
      `SELECT admitted_at, GREATEST(0, EXTRACT(EPOCH FROM (admitted_at - created_at)) * 1000) AS waited_ms,
         request->>'sourceVm' AS source_vm, (request->>'allowPostcopy')::boolean AS allow_postcopy
       FROM ${MIGRATION} WHERE id = $1`,
      [id],
    );
    const r = rows[0];
    if (!r?.admitted_at) {
      throw new CcmError(ErrorCodes.Conflict, `migration ${id} holds no admission slot`, {
        retryable: false,
        effect: 'none',
      });
    }
    return {
      admittedAt: r.admitted_at.toISOString(),
      waitedMs: Math.round(Number(r.waited_ms)),
      // A container's source guest, named by the request: the key-broker attests it for the key.
      ...(r.source_vm ? { sourceVmId: r.source_vm } : {}),
      // A VM's post-copy permission, carried in the step context to prepare-incoming and start-migration.
      ...(r.allow_postcopy ? { allowPostcopy: true } : {}),
    };
  }

  private async release(id: string): Promise<unknown> {
    return this.ds.transaction(async (m) => {
      await lockForRelease(m);
      const rows = await updateReturning(
        m,
        `UPDATE ${MIGRATION} SET released_at = now(), released_tick = nextval('${CLOCK}')
         WHERE id = $1 AND admitted_at IS NOT NULL AND released_at IS NULL RETURNING id`,
        [id],
      );
      if (rows.length) await notify(m, { kind: 'admit' });
      return { released: rows.length > 0 };
    });
  }

  private failure(row: SagaRow, d: Send, err: unknown): SagaFact | undefined {
    const ref = { step: d.step, attempt: d.attempt };
    const action = d.type === 'SendAction';
    const cause = isCcmError(err) ? err.cause : undefined;
    if (cause instanceof errors.TimeoutError) {
      return action ? { type: 'StepTimedOut', ...ref } : { type: 'CompensationTimedOut', ...ref };
    }
    if (cause !== undefined && !KNOWN_TRANSPORT_OUTCOMES.some((k) => cause instanceof k)) {
      this.log.warn(`${row.id} ${d.step}: outcome unknown (${(err as Error).message}); left in flight`);
      return undefined;
    }
    let error: CcmError;
    let effect: 'none' | 'maybe';
    if (err instanceof InvalidReplyError) {
      // It answered success with a reply we cannot use: it acted, and asking again will not fix it.
      error = err.error;
      effect = 'maybe';
    } else if (isCcmError(err)) {
      error = err;
      effect = cause instanceof errors.NoRespondersError ? 'none' : stepFailureEffect(err.toPayload());
    } else {
      this.log.error(`${row.id} ${d.step}: ${(err as Error).stack ?? String(err)}`);
      error = new CcmError(ErrorCodes.Internal, `coordinator failed to carry out ${d.command}`, {
        retryable: true,
      });
      effect = 'maybe';
    }
    const stepError = {
      code: error.code,
      message: error.message,
      ...(error.details ? { details: error.details } : {}),
    };
    return action
      ? { type: 'StepFailed', ...ref, retryable: error.retryable, effect, error: stepError }
      : { type: 'CompensationFailed', ...ref, retryable: error.retryable, error: stepError };
  }
}

/** nats.js reports nobody subscribed as NoRespondersError, or a RequestError wrapping it. */
/** Transport failures whose meaning is certain: nobody got it, or NATS refused the subject. */
const KNOWN_TRANSPORT_OUTCOMES = [errors.NoRespondersError, errors.PermissionViolationError];

function success(d: Send, result: unknown): SagaFact {
  return d.type === 'SendAction'
    ? { type: 'StepSucceeded', step: d.step, attempt: d.attempt, result }
    : { type: 'CompensationSucceeded', step: d.step, attempt: d.attempt };
}

/** A participant's success reply did not meet the command's reply contract. */
class InvalidReplyError extends Error {
  readonly error: CcmError;
  constructor(subject: string, issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>) {
    super(`invalid reply on ${subject}`);
    this.error = validationError(`reply on ${subject}`, issues);
  }
}
