import { type MigrationEventName } from '@ccm/contracts';
import {
  AttemptStatus,
  CommandKind,
  type AttemptRecord,
  type CommandDefinition,
  type SagaDecision,
  type SagaDefinition,
  type SagaState,
} from '@ccm/saga';
import { figuresOf } from './figures.js';

/** An event to publish for a migration, before the store stamps `migrationId`, `seq` and `at`. */
export interface PendingEvent {
  readonly name: MigrationEventName;
  readonly data: Record<string, unknown>;
}

/** One attempt row to upsert into `step_attempt`. */
export interface AttemptRow {
  readonly step: string;
  readonly stepIndex: number;
  readonly kind: CommandKind;
  readonly participant: string;
  readonly command: string;
  readonly record: AttemptRecord;
}

const KINDS = [CommandKind.Action, CommandKind.Compensation] as const;

function commandOf(def: SagaDefinition, index: number, kind: CommandKind): CommandDefinition {
  const step = def.steps[index];
  return (kind === CommandKind.Action ? step.action : step.compensation) ?? step.action;
}

function attemptsOf(state: SagaState, index: number, kind: CommandKind): readonly AttemptRecord[] {
  const s = state.steps[index];
  return kind === CommandKind.Action ? s.actions : s.compensations;
}

/** Attempts that are new or changed between two states of one saga, in step order. */
export function changedAttempts(def: SagaDefinition, before: SagaState, after: SagaState): AttemptRow[] {
  const rows: AttemptRow[] = [];
  after.steps.forEach((step, i) => {
    for (const kind of KINDS) {
      const old = attemptsOf(before, i, kind);
      const cmd = commandOf(def, i, kind);
      attemptsOf(after, i, kind).forEach((record, j) => {
        const prev = old[j];
        if (prev && prev.status === record.status && prev.endedAt === record.endedAt) return;
        rows.push({
          step: step.name,
          stepIndex: i,
          kind,
          participant: cmd.participant,
          command: cmd.command,
          record,
        });
      });
    }
  });
  return rows;
}

const SETTLED: Record<CommandKind, Partial<Record<AttemptStatus, MigrationEventName>>> = {
  [CommandKind.Action]: {
    [AttemptStatus.Succeeded]: 'step-succeeded',
    [AttemptStatus.Failed]: 'step-failed',
    [AttemptStatus.TimedOut]: 'step-timed-out',
  },
  [CommandKind.Compensation]: {
    [AttemptStatus.Succeeded]: 'compensation-succeeded',
    [AttemptStatus.Failed]: 'compensation-failed',
    [AttemptStatus.TimedOut]: 'compensation-timed-out',
  },
};

/**
 * The progress events of one state change: first the attempts that settled (with durations), then
 * one event per decision in the engine's order (phase changes, commands sent, retries, refusals, end).
 */
export function eventsOf(
  def: SagaDefinition,
  before: SagaState,
  after: SagaState,
  decisions: readonly SagaDecision[],
): PendingEvent[] {
  const events: PendingEvent[] = [];
  for (const row of changedAttempts(def, before, after)) {
    const name = SETTLED[row.kind][row.record.status];
    if (!name || row.record.endedAt === undefined) continue;
    const r = row.record;
    events.push({
      name,
      data: {
        step: row.step,
        attempt: r.attempt,
        participant: row.participant,
        command: row.command,
        durationMs: Math.max(0, r.endedAt! - r.sentAt),
        ...(r.error ? { error: r.error } : {}),
        ...(row.kind === CommandKind.Action && r.status === AttemptStatus.Failed && r.effect !== 'done'
          ? { effect: r.effect ?? 'maybe' }
          : {}),
      },
    });
  }
  for (const d of decisions) {
    const e = eventOfDecision(after, d);
    if (e) events.push(e);
  }
  return events;
}

function eventOfDecision(state: SagaState, d: SagaDecision): PendingEvent | undefined {
  switch (d.type) {
    case 'PhaseChanged':
      return {
        name: 'phase-changed',
        data: { from: d.from, to: d.to, ...(d.reason === undefined ? {} : { reason: d.reason }) },
      };
    case 'SendAction':
    case 'SendCompensation':
      return {
        name: d.type === 'SendAction' ? 'step-started' : 'compensation-started',
        data: {
          step: d.step,
          attempt: d.attempt,
          participant: d.participant,
          command: d.command,
          timeoutMs: d.timeoutMs,
        },
      };
    case 'ScheduleRetry':
      return {
        name: 'retry-scheduled',
        data: { step: d.step, kind: d.kind, attempt: d.attempt, delayMs: d.delayMs },
      };
    case 'CancelRefused':
      return { name: 'cancel-refused', data: { reason: d.reason, message: d.message } };
    case 'Finished': {
      const figures = figuresOf(state);
      return {
        name: 'finished',
        data: {
          phase: d.phase,
          reason: d.reason,
          durationMs: Math.max(0, state.updatedAt - state.createdAt),
          ...(figures ? { figures } : {}),
        },
      };
    }
    default:
      return undefined;
  }
}

/** The earliest armed timer of a state (epoch ms), or null when none is armed. */
export function wakeAt(state: SagaState): number | null {
  return state.timers.length ? Math.min(...state.timers.map((t) => t.at)) : null;
}
