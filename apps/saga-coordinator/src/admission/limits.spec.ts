import { describe, expect, it } from 'vitest';
import { AdmissionLimits } from './limits.js';

describe('AdmissionLimits', () => {
  const limits = { maxActive: 3, maxPerSource: 2, maxPerTarget: 1 };

  it('counts the slots already in use', () => {
    const l = new AdmissionLimits(limits, [{ source: 'a', target: 'x' }]);
    expect(l.fits({ source: 'a', target: 'x' })).toBe(false);
    expect(l.fits({ source: 'a', target: 'y' })).toBe(true);
  });

  it('takes slots until a host or the whole is full', () => {
    const l = new AdmissionLimits(limits);
    expect(l.take({ source: 'a', target: 'x' })).toBe(true);
    expect(l.take({ source: 'a', target: 'y' })).toBe(true);
    expect(l.take({ source: 'a', target: 'z' })).toBe(false);
    expect(l.take({ source: 'b', target: 'x' })).toBe(false);
    expect(l.full()).toBe(false);
    expect(l.take({ source: 'b', target: 'z' })).toBe(true);
    expect(l.full()).toBe(true);
    expect(l.take({ source: 'c', target: 'w' })).toBe(false);
  });
});
