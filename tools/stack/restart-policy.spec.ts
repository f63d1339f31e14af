import { describe, expect, it } from 'vitest';
import { CRASH_LOOP_DEATHS, CRASH_LOOP_WINDOW_MS, RestartPolicy } from './restart-policy.js';

describe('the launcher restart policy', () => {
  it('backs off exponentially and gives up on the fifth death within a minute', () => {
    const p = new RestartPolicy();
    const decisions = [0, 1_000, 2_000, 3_000, 4_000].map((t) => p.onDeath(t));
    expect(decisions.map((d) => (d.restart ? d.delayMs : 'give up'))).toEqual([
      500,
      1_000,
      2_000,
      4_000,
      'give up',
    ]);
    expect(decisions.at(-1)?.deathsInWindow).toBe(CRASH_LOOP_DEATHS);
  });

  it('forgets deaths older than the window, so a rare crash is always restarted quickly', () => {
    const p = new RestartPolicy();
    for (let i = 0; i < 10; i++) {
      const d = p.onDeath(i * CRASH_LOOP_WINDOW_MS);
      expect(d).toEqual({ restart: true, delayMs: 500, deathsInWindow: 1 });
    }
  });

  it('caps the delay', () => {
    const p = new RestartPolicy({ deaths: 100, windowMs: 60_000, firstMs: 500, maxMs: 8_000 });
    let last = 0;
    for (let i = 0; i < 20; i++) {
      const d = p.onDeath(i);
      if (d.restart) last = d.delayMs;
    }
    expect(last).toBe(8_000);
  });
});
