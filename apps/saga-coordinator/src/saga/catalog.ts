import { type WorkloadKind } from '@ccm/contracts';
import {
  CONTAINER_MIGRATION,
  VM_MIGRATION,
  createSagaMachine,
  sagaId,
  type CommandDefinition,
  type SagaDefinition,
  type SagaMachine,
} from '@ccm/saga';

/** How the coordinator stretches the sagas' clocks: see `CCM_SAGA_TIME_SCALE`. */
export interface TimeScale {
  /** Multiplies every step timeout and retry delay; 1 keeps the definitions as written. */
  readonly factor: number;
  /** No scaled timeout is shorter than this. */
  readonly minTimeoutMs: number;
}

function scaleCommand(c: CommandDefinition, s: TimeScale): CommandDefinition {
  return {
    ...c,
    timeoutMs: Math.max(s.minTimeoutMs, Math.round(c.timeoutMs * s.factor)),
    retry: {
      ...c.retry,
      baseDelayMs: Math.round(c.retry.baseDelayMs * s.factor),
      maxDelayMs: Math.round(c.retry.maxDelayMs * s.factor),
    },
  };
}

/**
 * A definition with every timeout and retry delay scaled. Name, version, steps and classes are
 * unchanged, so state rows stay compatible with the unscaled definition (only clocks differ).
 */
export function scaleDefinition(def: SagaDefinition, s: TimeScale): SagaDefinition {
  if (s.factor === 1) return def;
  return Object.freeze({
    ...def,
    steps: def.steps.map((step) => ({
      ...step,
      action: scaleCommand(step.action, s),
      ...(step.compensation ? { compensation: scaleCommand(step.compensation, s) } : {}),
    })),
  });
}

/** The engine of each saga the coordinator runs, by workload kind and by state row (`name@version`). */
export class SagaCatalog {
  private readonly byKind: Record<WorkloadKind, SagaMachine>;
  private readonly byId = new Map<string, SagaMachine>();

  constructor(scale: TimeScale) {
    this.byKind = {
      container: createSagaMachine(scaleDefinition(CONTAINER_MIGRATION, scale)),
      vm: createSagaMachine(scaleDefinition(VM_MIGRATION, scale)),
    };
    for (const m of Object.values(this.byKind)) this.byId.set(sagaId(m.definition), m);
  }

  forKind(kind: WorkloadKind): SagaMachine {
    return this.byKind[kind];
  }

  /** @throws Error for a row written by a saga this build does not know (a newer or retired version). */
  forSaga(saga: string): SagaMachine {
    const m = this.byId.get(saga);
    if (!m) throw new Error(`no saga definition ${saga} in this coordinator build`);
    return m;
  }
}
