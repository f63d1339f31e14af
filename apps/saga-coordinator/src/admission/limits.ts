/** The concurrency limits admission enforces. */
export interface Limits {
  /** Migrations running at once, everywhere. */
  readonly maxActive: number;
  /** Migrations running at once out of one source host. */
  readonly maxPerSource: number;
  /** Migrations running at once into one target host. */
  readonly maxPerTarget: number;
}

/** The hosts a running migration occupies. */
export interface Slot {
  readonly source: string;
  readonly target: string;
}

/** Counts the slots in use and says whether one more migration fits. Pure. */
export class AdmissionLimits {
  private active = 0;
  private readonly bySource = new Map<string, number>();
  private readonly byTarget = new Map<string, number>();

  constructor(
    private readonly limits: Limits,
    inUse: Iterable<Slot> = [],
  ) {
    for (const s of inUse) this.add(s);
  }

  /** True when no migration at all may start. */
  full(): boolean {
    return this.active >= this.limits.maxActive;
  }

  /** Whether `slot` fits under every limit. */
  fits(slot: Slot): boolean {
    return (
      !this.full() &&
      (this.bySource.get(slot.source) ?? 0) < this.limits.maxPerSource &&
      (this.byTarget.get(slot.target) ?? 0) < this.limits.maxPerTarget
    );
  }

  /** Takes the slot when it fits; returns whether it did. */
  take(slot: Slot): boolean {
    if (!this.fits(slot)) return false;
    this.add(slot);
    return true;
  }

  private add(s: Slot): void {
    this.active += 1;
    this.bySource.set(s.source, (this.bySource.get(s.source) ?? 0) + 1);
    this.byTarget.set(s.target, (this.byTarget.get(s.target) ?? 0) + 1);
  }
}
