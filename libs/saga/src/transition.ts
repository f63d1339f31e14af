import { type SagaDefinition } from './definition.js';
import { type SagaDecision } from './decisions.js';
import { type FinalPhase, type SagaPhase } from './phases.js';
import { type RandomSource } from './retry.js';
import { type ArmedTimer, type SagaState, type Writable } from './state.js';

/** Why `advance` left the state alone. */
export enum IgnoreReason {
  /** `Started` for a saga that is already running or done. */
  AlreadyStarted = 'AlreadyStarted',
  /** The saga is in a final phase; nothing changes it any more. */
  SagaFinished = 'SagaFinished',
  /** The fact names a step the definition does not have. */
  UnknownStep = 'UnknownStep',
  /** The fact answers an attempt that is not the one awaited: a duplicate, stale or late reply. */
  NotAwaited = 'NotAwaited',
  /** The timer is not armed (already fired, disarmed, or never set). */
  UnknownTimer = 'UnknownTimer',
  /** A cancel request for a saga that is already cancelling. */
  AlreadyCancelling = 'AlreadyCancelling',
}

/** The result of one `advance`. */
export interface AdvanceResult {
  /** The new state; the very same object as the input when nothing changed. */
  readonly state: SagaState;
  /** What to do, in order. Empty when ignored. */
  readonly decisions: readonly SagaDecision[];
  /** False when the state is unchanged (ignored facts, refused cancels): skip the write. */
  readonly changed: boolean;
  /** Present when the fact was ignored; log it, do not treat it as an error. */
  readonly ignored?: { readonly reason: IgnoreReason; readonly detail: string };
}

/**
 * The working copy of one transition: a deep copy of the input state that the step handlers mutate,
 * plus the decisions collected so far. Internal to the engine.
 */
export class Transition {
  readonly state: Writable<SagaState>;
  private readonly decisions: SagaDecision[] = [];

  constructor(
    readonly def: SagaDefinition,
    input: SagaState,
    readonly now: number,
    readonly random: RandomSource,
  ) {
    this.state = structuredClone(input) as Writable<SagaState>;
  }

  emit(decision: SagaDecision): void {
    this.decisions.push(decision);
  }

  /** Enters `phase` (no-op when already there), records it with `reason` and announces it. */
  setPhase(phase: SagaPhase, reason?: string): void {
    const from = this.state.phase;
    if (from === phase) return;
    this.state.phase = phase;
    this.state.phaseHistory.push(
      reason === undefined ? { phase, at: this.now } : { phase, at: this.now, reason },
    );
    if (reason !== undefined) this.state.reason = reason;
    this.emit({
      type: 'PhaseChanged',
      from,
      to: phase,
      at: this.now,
      ...(reason === undefined ? {} : { reason }),
    });
  }

  /** Enters a final phase, disarms every timer still armed and emits `Finished`. */
  finish(phase: FinalPhase, reason: string): void {
    this.setPhase(phase, reason);
    for (const t of [...this.state.timers]) this.disarm(t.timerId);
    this.emit({ type: 'Finished', phase, reason });
  }

  /** Records a timer and emits the decision that asks the coordinator to arm it. */
  arm(timer: ArmedTimer, delayMs?: number): void {
    this.state.timers.push({ ...timer });
    const { timerId, step, kind, attempt, at } = timer;
    if (timer.purpose === 'timeout') this.emit({ type: 'SetTimeout', timerId, step, kind, attempt, at });
    else
      this.emit({
        type: 'ScheduleRetry',
        timerId,
        step,
        kind,
        attempt,
        delayMs: delayMs ?? at - this.now,
        at,
      });
  }

  /** Forgets a timer (when armed) and emits `CancelTimer` for it. */
  disarm(timerId: string): void {
    const i = this.state.timers.findIndex((t) => t.timerId === timerId);
    if (i < 0) return;
    this.state.timers.splice(i, 1);
    this.emit({ type: 'CancelTimer', timerId });
  }

  /** Removes a timer that has fired (no decision: it is gone already). */
  consumeTimer(timerId: string): ArmedTimer | undefined {
    const i = this.state.timers.findIndex((t) => t.timerId === timerId);
    return i < 0 ? undefined : this.state.timers.splice(i, 1)[0];
  }

  result(): AdvanceResult {
    this.state.revision += 1;
    this.state.updatedAt = this.now;
    return { state: this.state, decisions: this.decisions, changed: true };
  }
}

/** The result for a fact that changes nothing. */
export function ignored(state: SagaState, reason: IgnoreReason, detail: string): AdvanceResult {
  return { state, decisions: [], changed: false, ignored: { reason, detail } };
}
