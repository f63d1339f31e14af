/**
 * The services a saga step can address. The strings are the service names of libs/contracts
 * (`ServiceName`), so `subjects.cmd(step.participant, step.action)` gives the subject; libs/saga keeps its
 * own copy to stay free of runtime dependencies. `saga-coordinator` steps are executed by the coordinator
 * itself (admission, verification) but go through the same decisions, keys and timeouts.
 */
export const Participant = {
  Coordinator: 'saga-coordinator',
  KeyBroker: 'key-broker',
  VmLifecycle: 'vm-lifecycle',
  HostAgent: 'host-agent',
  ContainerCheckpoint: 'container-checkpoint',
  NetworkOverlay: 'network-overlay',
} as const;

export type Participant = (typeof Participant)[keyof typeof Participant];

/**
 * What a step is allowed to do when it fails, relative to the point of no return.
 */
export enum StepClass {
  /** Before the pivot: may fail; its compensation (if any) undoes it when the saga rolls back. */
  Compensable = 'compensable',
  /**
   * The point of no return, exactly one per saga. It has no compensation. While it has not been sent,
   * the saga can be cancelled; once sent, cancellation is refused; once it succeeds the saga only moves
   * forward. If it gives up, the steps before it are compensated, so it must be a step whose failure
   * leaves nothing behind (a check, not a destructive act).
   */
  Pivot = 'pivot',
  /** After the pivot: retried until done (with capped backoff); never compensated. */
  Retriable = 'retriable',
}

/**
 * Exponential backoff: the wait after failed attempt `n` (1-based) is
 * `min(maxDelayMs, baseDelayMs * factor^(n-1))`, then shortened by up to `jitterRatio` of itself using
 * the injected random source. `maxAttempts` counts every attempt including the first;
 * `Number.POSITIVE_INFINITY` retries forever. A failure marked non-retryable stops retries at once.
 */
export interface RetryPolicy {
  readonly baseDelayMs: number;
  readonly factor: number;
  readonly maxDelayMs: number;
  readonly maxAttempts: number;
  /** 0 (default) waits exactly the backoff; 1 waits anywhere in [0, backoff). */
  readonly jitterRatio?: number;
}

/** A command the coordinator sends for a step: who, what verb, how long to wait, how to retry. */
export interface CommandDefinition {
  readonly participant: Participant;
  /** The verb, as in `ccm.cmd.<participant>.<verb>`. */
  readonly command: string;
  readonly timeoutMs: number;
  readonly retry: RetryPolicy;
}

/** One step of a validated definition; every default is resolved. */
export interface StepDefinition {
  readonly name: string;
  readonly class: StepClass;
  /** One line for operators and the audit timeline. */
  readonly description: string;
  /** Other services the participant calls while executing the step (documentation only). */
  readonly collaborators: readonly Participant[];
  readonly action: CommandDefinition;
  /** Undoes the action; absent when there is nothing to undo (a check) or the step is not compensable. */
  readonly compensation?: CommandDefinition;
  /** A cancel abandons its action in flight (see `StepSpec.interruptible`). */
  readonly interruptible: boolean;
}

/** A validated saga definition, as returned by `defineSaga`. Deeply frozen. */
export interface SagaDefinition {
  readonly name: string;
  /** Bump when steps change meaning; a state row records the version it was started with. */
  readonly version: number;
  readonly steps: readonly StepDefinition[];
  /** Index of the pivot step in `steps`. */
  readonly pivotIndex: number;
}

/** A compensation as written in a spec: participant, timeout and retry default from the action. */
export interface CompensationSpec {
  readonly command: string;
  readonly participant?: Participant;
  readonly timeoutMs?: number;
  readonly retry?: RetryPolicy;
}

/** One step as written in a spec, before validation. */
export interface StepSpec {
  readonly name: string;
  readonly class: StepClass;
  readonly description?: string;
  readonly participant: Participant;
  readonly collaborators?: readonly Participant[];
  /** The action's verb. */
  readonly action: string;
  readonly timeoutMs: number;
  /** Defaults by class: see `defaultRetryFor`. */
  readonly retry?: RetryPolicy;
  readonly compensation?: CompensationSpec;
  /**
   * The action only waits on work an earlier step started (e.g. a VM migration converging), so a
   * cancel abandons it at once (recorded failed, effect none) instead of waiting for its reply or
   * timeout; the earlier step's compensation stops that work. Only for steps without compensation.
   */
  readonly interruptible?: boolean;
}

/** The input of `defineSaga`. */
export interface SagaSpec {
  readonly name: string;
  readonly version: number;
  readonly steps: readonly StepSpec[];
}

/** A saga's identity as stored in a state row: `name@version`. */
export function sagaId(def: Pick<SagaDefinition, 'name' | 'version'>): string {
  return `${def.name}@${def.version}`;
}
