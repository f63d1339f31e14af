import { type Participant } from './definition.js';
import { type CommandKind, type FinalPhase, type SagaPhase } from './phases.js';

/**
 * Decisions: what the coordinator must do after persisting the new state, in order. They are data; the
 * engine performs no I/O. Persist the state and the decisions in one transaction (outbox style), then
 * execute them; each is safe to execute twice (keys and timer ids are deterministic).
 */

/** Send action attempt `attempt` of `step` to `participant` as `command` with this idempotency key. */
export interface SendAction {
  readonly type: 'SendAction';
  readonly step: string;
  readonly participant: Participant;
  readonly command: string;
  readonly attempt: number;
  readonly idempotencyKey: string;
  /** How long to wait for the reply; a `SetTimeout` for `deadlineAt` accompanies this decision. */
  readonly timeoutMs: number;
  readonly deadlineAt: number;
}

/** Send compensation attempt `attempt` of `step`; same fields as `SendAction`. */
export interface SendCompensation extends Omit<SendAction, 'type'> {
  readonly type: 'SendCompensation';
}

/** Arm a timer: at `at`, feed `TimerFired{timerId}` unless the reply came first. */
export interface SetTimeout {
  readonly type: 'SetTimeout';
  readonly timerId: string;
  readonly step: string;
  readonly kind: CommandKind;
  readonly attempt: number;
  readonly at: number;
}

/** Arm a retry timer: at `at`, feed `TimerFired{timerId}` and the engine sends attempt `attempt`. */
export interface ScheduleRetry {
  readonly type: 'ScheduleRetry';
  readonly timerId: string;
  readonly step: string;
  readonly kind: CommandKind;
  /** The attempt that will be sent when the timer fires. */
  readonly attempt: number;
  readonly delayMs: number;
  readonly at: number;
}

/** Disarm a timer; it is no longer awaited (a fact for it would be ignored anyway). */
export interface CancelTimer {
  readonly type: 'CancelTimer';
  readonly timerId: string;
}

/** The saga changed phase: publish the event (e.g. `ccm.evt.migration.<id>.<phase>`). */
export interface PhaseChanged {
  readonly type: 'PhaseChanged';
  readonly from: SagaPhase;
  readonly to: SagaPhase;
  readonly at: number;
  readonly reason?: string;
}

/** Why a cancel request was refused. */
export enum CancelRefusalReason {
  /** The pivot has been sent: the saga can only go forward now. */
  PastPointOfNoReturn = 'PastPointOfNoReturn',
  /** The saga is already rolling back after a failure; it will end RolledBack (or NeedsOperator). */
  AlreadyRollingBack = 'AlreadyRollingBack',
  /** The saga has already ended. */
  AlreadyFinished = 'AlreadyFinished',
}

/** A cancel request was refused; the state is unchanged. Reply or publish the refusal. */
export interface CancelRefused {
  readonly type: 'CancelRefused';
  readonly reason: CancelRefusalReason;
  readonly message: string;
}

/** The saga reached a final phase; stop leasing it. `reason` is the operator-facing why. */
export interface Finished {
  readonly type: 'Finished';
  readonly phase: FinalPhase;
  readonly reason: string;
}

/** Everything `advance` may decide. */
export type SagaDecision =
  | SendAction
  | SendCompensation
  | SetTimeout
  | ScheduleRetry
  | CancelTimer
  | PhaseChanged
  | CancelRefused
  | Finished;
