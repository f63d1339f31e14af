import { describe, expect, it } from 'vitest';
import { Phases } from './phases.js';

describe('Phases', () => {
  it('times async and plain functions alike, passing their result through', async () => {
    const p = new Phases();
    expect(await p.time('plain', () => 7)).toBe(7);
    expect(await p.time('async', () => Promise.resolve('x'))).toBe('x');
    expect(Object.keys(p.ms).sort()).toEqual(['async', 'plain']);
    expect(p.ms['plain']).toBeGreaterThanOrEqual(0);
  });

  it('counts a part that throws, plain or async, and lets the error through', async () => {
    const p = new Phases();
    await expect(
      p.time('plain', () => {
        throw new Error('refused');
      }),
    ).rejects.toThrow('refused');
    await expect(p.time('async', () => Promise.reject(new Error('gone')))).rejects.toThrow('gone');
    expect(Object.keys(p.ms).sort()).toEqual(['async', 'plain']);
  });

  it('adds a part timed twice', () => {
    const p = new Phases();
    p.add('stream', 1.25);
    p.add('stream', 2.5);
    p.add('stream', -3);
    expect(p.ms).toEqual({ stream: 3.8 });
  });
});
