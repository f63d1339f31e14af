import { describe, expect, it } from 'vitest';
import { KeyedLock } from './keyed-lock.js';

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

describe('KeyedLock', () => {
  it('runs the tasks of one key one after the other, in order, whatever the earlier ones did', async () => {
    const lock = new KeyedLock();
    const seen: string[] = [];
    const gate = deferred();
    const a = lock.run('vm-1', async () => {
      seen.push('a start');
      await gate.promise;
      seen.push('a end');
      throw new Error('a failed');
    });
    const b = lock.run('vm-1', () => {
      seen.push('b');
      return Promise.resolve(2);
    });
    await Promise.resolve();
    expect(seen).toEqual(['a start']);
    gate.resolve();
    await expect(a).rejects.toThrow('a failed');
    await expect(b).resolves.toBe(2);
    expect(seen).toEqual(['a start', 'a end', 'b']);
  });

  it('lets other keys run meanwhile, and forgets a key once its queue is empty', async () => {
    const lock = new KeyedLock();
    const gate = deferred();
    const slow = lock.run('vm-1', () => gate.promise);
    await expect(lock.run('vm-2', () => Promise.resolve('other'))).resolves.toBe('other');
    expect(lock.busy).toBe(1);
    gate.resolve();
    await slow;
    const deadline = Date.now() + 1000;
    while (lock.busy && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    expect(lock.busy).toBe(0);
  });
});
