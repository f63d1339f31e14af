/**
 * Named parts of one operation, in milliseconds (e.g. a container's frozen window: pause, dump,
 * stream, …), for replies' `phasesMs`. A part timed twice adds up.
 */
export class Phases {
  readonly ms: Record<string, number> = {};

  /** Runs `f` (async or not), adding its time (also when it throws) to part `name`. */
  async time<T>(name: string, f: () => T | Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await f();
    } finally {
      this.add(name, performance.now() - started);
    }
  }

  add(name: string, ms: number): void {
    this.ms[name] = Math.round(((this.ms[name] ?? 0) + Math.max(0, ms)) * 10) / 10;
  }
}
