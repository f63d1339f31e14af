import {
  Inject,
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { isFinal, type SagaDecision, type SagaFact, type SagaState } from '@ccm/saga';
import { Admission } from '../admission/admission.js';
import { type CoordinatorConfig } from '../config.js';
import { SagaCatalog } from './catalog.js';
import { StepDispatcher } from './dispatcher.js';
import { Leases } from './leases.js';
import { wakeAt } from './projection.js';
import { SagaStore, type Applied, type FactSource, type SagaRow } from './store.js';
import { Wakeups, type Wakeup } from './wakeups.js';

/** Longest a draining replica waits for the commands it has in flight before handing its leases back. */
export const DRAIN_WAIT_MS = 2_000;

type Send = Extract<SagaDecision, { type: 'SendAction' | 'SendCompensation' }>;
const isSend = (d: SagaDecision): d is Send => d.type === 'SendAction' || d.type === 'SendCompensation';

/**
 * Drives the sagas this replica holds. After every state change it sends the commands the engine
 * decided (each once per idempotency key while awaited) and arms a local timer for the earliest due
 * saga timer. A periodic tick renews leases, takes over lapsed ones (resuming from the rows: the
 * command in flight is re-sent with the same key, so its participant answers it once), fires timers
 * due in the database and runs an admission pass; Postgres notifications make all of it prompt.
 */
@Injectable()
export class SagaRunner implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly log = new Logger('SagaRunner');
  /** Sagas this replica holds, with the local timer armed for each. */
  private readonly held = new Map<string, NodeJS.Timeout | undefined>();
  /** Idempotency keys of commands being carried out right now. */
  private readonly awaiting = new Set<string>();
  private readonly inflight = new Set<Promise<void>>();
  private ticker?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private lastRenewAt = 0;
  private stopping = false;

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: CoordinatorConfig,
    private readonly store: SagaStore,
    private readonly catalog: SagaCatalog,
    private readonly dispatcher: StepDispatcher,
    private readonly leases: Leases,
    private readonly admission: Admission,
    private readonly wakeups: Wakeups,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.admission.onAdmitted((a) => this.follow(a));
    this.wakeups.on((w) => this.onWakeup(w));
    await this.wakeups.start();
    this.lastRenewAt = Date.now();
    await this.tick();
    this.ticker = setInterval(() => void this.tick(), this.config.CCM_SAGA_TICK_MS);
  }

  /** Sagas this replica drives right now. */
  heldIds(): string[] {
    return [...this.held.keys()];
  }

  /** Applies facts to a saga (any replica may) and carries out what follows. */
  async apply(id: string, facts: FactSource): Promise<Applied | undefined> {
    const a = await this.store.apply(id, facts);
    if (a) this.follow(a);
    return a;
  }

  /** After a committed change: the holder sends and arms its timer; anyone else leaves it to the holder. */
  follow(a: Applied): void {
    if (isFinal(a.state.phase)) return this.forget(a.row.id);
    if (!a.row.mine || this.stopping) return;
    this.execute(a.row, a.state, a.decisions);
    this.armTimer(a.row.id, a.state);
  }

  private execute(row: SagaRow, state: SagaState, decisions: readonly SagaDecision[]): void {
    for (const d of decisions) if (isSend(d)) this.send(row, state, d);
  }

  private send(row: SagaRow, state: SagaState, d: Send): void {
    if (this.stopping || this.awaiting.has(d.idempotencyKey)) return;
    // Past its deadline the attempt is the timeout timer's business, not a new send's.
    if (d.deadlineAt <= Date.now()) return;
    this.awaiting.add(d.idempotencyKey);
    const p: Promise<void> = (async () => {
      const fact = await this.dispatcher.perform(row, state, d);
      if (fact) await this.apply(row.id, [fact]);
    })()
      .catch((err: unknown) => this.log.warn(`${row.id} ${d.step}: ${(err as Error).message}`))
      .finally(() => {
        this.awaiting.delete(d.idempotencyKey);
        this.inflight.delete(p);
      });
    this.inflight.add(p);
  }

  /** Re-establishes what a held saga waits for from its row: commands in flight and its timer. */
  private resume(row: SagaRow): void {
    if (!row.state || isFinal(row.state.phase)) return this.forget(row.id);
    const machine = this.catalog.forSaga(row.saga);
    this.execute(row, row.state, machine.resume(row.state, Date.now()));
    this.armTimer(row.id, row.state);
  }

  private async reconcile(id: string): Promise<void> {
    const row = await this.store.load(id);
    if (row?.mine) return this.resume(row);
    if (this.held.has(id) && row?.state && !isFinal(row.state.phase)) {
      this.log.warn(`lost the lease on ${id}; another replica drives it now`);
    }
    this.forget(id);
  }

  private armTimer(id: string, state: SagaState): void {
    clearTimeout(this.held.get(id));
    const at = wakeAt(state);
    const timer =
      at === null ? undefined : setTimeout(() => void this.fireDue(id), Math.max(0, at - Date.now()));
    this.held.set(id, timer);
  }

  private async fireDue(id: string): Promise<void> {
    if (this.stopping) return;
    const due = (s: SagaState): SagaFact[] =>
      s.timers
        .filter((t) => t.at <= Date.now())
        .sort((a, b) => a.at - b.at)
        .map((t) => ({ type: 'TimerFired', timerId: t.timerId }));
    try {
      const a = await this.apply(id, due);
      // A timer that was not yet due when the row was read is re-armed by `follow`, or here.
      if (a && !a.changed && a.row.mine) this.armTimer(id, a.state);
    } catch (err) {
      this.log.warn(`${id}: firing timers failed: ${(err as Error).message}`);
    }
  }

  private forget(id: string): void {
    clearTimeout(this.held.get(id));
    this.held.delete(id);
  }

  private onWakeup(w: Wakeup): void {
    if (this.stopping) return;
    if (w.kind === 'admit') void this.admission.pass();
    else if (w.kind === 'released') void this.tick();
    else if (this.held.has(w.id)) {
      void this.reconcile(w.id).catch((err: unknown) =>
        this.log.warn(`${w.id}: reconcile failed: ${(err as Error).message}`),
      );
    }
  }

  /** Renew, take over, fire what is due, admit. One tick at a time. */
  private tick(): Promise<void> {
    this.ticking ??= this.tickOnce()
      .catch((err: unknown) => this.log.warn(`tick failed: ${(err as Error).message}`))
      .finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async tickOnce(): Promise<void> {
    if (this.stopping) return;
    const now = Date.now();
    if (now - this.lastRenewAt >= this.leases.leaseMs / 3) {
      this.lastRenewAt = now;
      const still = await this.leases.renew();
      const recheck = [...this.held.keys()].filter((id) => !still.has(id));
      recheck.push(...[...still].filter((id) => !this.held.has(id)));
      for (const id of recheck) await this.reconcile(id);
    }
    for (const t of await this.leases.takeOver()) {
      if (t.previousOwner && t.previousOwner !== this.store.instanceId) {
        this.log.log(`took over ${t.row.id} from ${t.previousOwner} (lease lapsed)`);
      }
      this.resume(t.row);
    }
    for (const id of await this.leases.due(Date.now())) await this.fireDue(id);
    await this.admission.pass();
  }

  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.ticker);
    await this.ticking;
    this.stopping = true;
    for (const id of [...this.held.keys()]) this.forget(id);
    const drained = Promise.allSettled([...this.inflight]);
    await Promise.race([drained, new Promise((r) => setTimeout(r, DRAIN_WAIT_MS).unref())]);
    const released = await this.leases.releaseAll().catch(() => 0);
    this.log.log(`stopped; handed back ${released} saga lease(s)`);
  }
}
