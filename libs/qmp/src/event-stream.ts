import type { QmpEvent } from './events.js';

/**
 * An unbounded-by-default buffer of events turned into an async iterator. The producer calls `push` and
 * `end`; the consumer iterates. Ending (connection closed, `return()` from a `for await` break, or an
 * abort) resolves any waiting `next()` with `done`.
 */
export class EventStream implements AsyncIterableIterator<QmpEvent> {
  private readonly queue: QmpEvent[] = [];
  private waiter: ((r: IteratorResult<QmpEvent>) => void) | undefined;
  private ended = false;
  /** Events dropped because the buffer was full (the oldest are dropped first). */
  dropped = 0;

  constructor(
    private readonly onEnd: () => void,
    private readonly maxBuffered = 10_000,
  ) {}

  push(e: QmpEvent): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: e, done: false });
      return;
    }
    this.queue.push(e);
    if (this.queue.length > this.maxBuffered) {
      this.queue.shift();
      this.dropped++;
    }
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd();
    const w = this.waiter;
    this.waiter = undefined;
    w?.({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<QmpEvent>> {
    const head = this.queue.shift();
    if (head) return Promise.resolve({ value: head, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiter = resolve));
  }

  return(): Promise<IteratorResult<QmpEvent>> {
    this.end();
    this.queue.length = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<QmpEvent> {
    return this;
  }
}
