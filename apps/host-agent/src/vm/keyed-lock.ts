/**
 * Runs one task at a time per key (a per-VM command lock): a task waits for the tasks queued before it
 * on its key, whatever their outcome, and the key is forgotten once its queue is empty.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    const run = before.then(fn);
    const tail = run.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return run;
  }

  /** Keys with a task running or queued. */
  get busy(): number {
    return this.tails.size;
  }
}
