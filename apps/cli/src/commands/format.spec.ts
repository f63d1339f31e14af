import { describe, expect, it } from 'vitest';
import { figuresText } from './format.js';

describe('figuresText', () => {
  it("puts a container's frozen time beside the blackout", () => {
    expect(
      figuresText({ blackoutMs: 420, frozenMs: 315, brownoutMs: 12, cutOverMs: 3, peersUpdated: 2 }),
    ).toBe('; blackout 420 ms, container frozen 315 ms, brownout 12 ms (cut-over 3 ms, 2 peers)');
  });

  it('says nothing when nothing was measured', () => {
    expect(figuresText(undefined)).toBe('');
    expect(figuresText({})).toBe('');
  });
});
