import { describe, expect, it } from 'vitest';
import { guestEnded } from './lent-addresses.consumer.js';

describe('guestEnded', () => {
  it('counts a destroyed, died or failed VM that had run on that host', () => {
    expect(guestEnded('Destroyed', 'Running')).toBe(true);
    expect(guestEnded('Died', 'Paused')).toBe(true);
    expect(guestEnded('Failed', 'Running')).toBe(true);
  });
  it('does not count a destination that ended before the guest arrived, nor a move on', () => {
    expect(guestEnded('Failed', 'Incoming')).toBe(false);
    expect(guestEnded('Destroyed', 'Incoming')).toBe(false);
    expect(guestEnded('Failed', 'Starting')).toBe(false);
    expect(guestEnded('MigratedAway', 'Running')).toBe(false);
    expect(guestEnded('Destroyed', undefined)).toBe(false);
  });
});
