/**
 * One record's state in memory with ordered writes: a change is computed on a copy (stamping
 * `phaseChangedAt` when the phase changes, and dropping the old phase's `reason`), and queued, so the
 * database sees the changes in the order they happened, each written once. `extra` (events) travels
 * with the write it belongs to.
 */
export class StateCell<T extends { phase: string; phaseChangedAt: Date; reason?: string }, E = never> {
  private current_: T;
  private persisted: T | undefined;
  private writes: Promise<void> = Promise.resolve();

  constructor(
    current: T,
    /** Last written state; undefined for a new record (its history restarts). */
    persisted: T | undefined,
    private readonly save: (next: T, prev: T | undefined, extra: readonly E[]) => Promise<void>,
  ) {
    this.current_ = current;
    this.persisted = persisted;
  }

  get current(): T {
    return this.current_;
  }

  /** Applies `patch` and queues the write; resolves once written. */
  update(patch: Partial<Omit<T, 'phaseChangedAt'>>, extra: readonly E[] = []): Promise<void> {
    const prev = this.current_;
    const phaseChanged = patch.phase !== undefined && patch.phase !== prev.phase;
    const next = { ...prev, ...patch, phaseChangedAt: phaseChanged ? new Date() : prev.phaseChangedAt } as T;
    if (phaseChanged && !('reason' in patch)) delete next.reason;
    this.current_ = next;
    return this.flush(extra);
  }

  /** Writes the current state unless it is what was last written (or `extra` must go out). */
  flush(extra: readonly E[] = []): Promise<void> {
    const next = this.current_;
    const write = this.writes.then(async () => {
      if (!extra.length && this.persisted && JSON.stringify(this.persisted) === JSON.stringify(next)) return;
      await this.save(next, this.persisted, extra);
      this.persisted = next;
    });
    this.writes = write.catch(() => undefined);
    return write;
  }
}
