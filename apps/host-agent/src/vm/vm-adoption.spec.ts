import { describe, expect, it } from 'vitest';
import { adoptedPhase } from './vm-adoption.js';

describe('adoptedPhase', () => {
  it.each([
    ['running', 'Running'],
    ['inmigrate', 'Incoming'],
    ['paused', 'Paused'],
    ['prelaunch', 'Paused'],
    ['postmigrate', undefined],
    ['finish-migrate', undefined],
    ['internal-error', undefined],
  ])('QEMU run state %s is phase %s', (status, phase) => {
    expect(adoptedPhase(status)).toBe(phase);
  });
});
