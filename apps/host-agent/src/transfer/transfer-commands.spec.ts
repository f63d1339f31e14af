import { TRANSFER_PHASES, type TransferPhase } from '@ccm/contracts';
import { describe, expect, it } from 'vitest';
import { cancelAction, continueAction } from './transfer-commands.js';

const outcome = (f: () => string): string => {
  try {
    return f();
  } catch (err) {
    const e = err as { code: string; retryable: boolean };
    return `${e.code}${e.retryable ? ' (retryable)' : ''}`;
  }
};

describe('what continue and cancel do in each transfer phase', () => {
  const continueWants: Record<TransferPhase, string> = {
    Starting: 'CONFLICT (retryable)',
    Active: 'CONFLICT (retryable)',
    AwaitingSwitchover: 'act',
    SwitchingOver: 'answer',
    // Regression: a repeated continue while the completed migration was still being filed got CONFLICT.
    Completed: 'answer',
    Cancelling: 'CONFLICT',
    Cancelled: 'CONFLICT',
    Failed: 'CONFLICT',
  };
  const cancelWants: Record<TransferPhase, string> = {
    Starting: 'act',
    Active: 'act',
    AwaitingSwitchover: 'act',
    SwitchingOver: 'act',
    Completed: 'REFUSED',
    Cancelling: 'act',
    Cancelled: 'answer',
    Failed: 'answer',
  };

  it.each(TRANSFER_PHASES)('%s', (phase) => {
    expect(outcome(() => continueAction('m', phase))).toBe(continueWants[phase]);
    expect(outcome(() => cancelAction('m', phase))).toBe(cancelWants[phase]);
  });

  it('names the migration and its phase in the refusal', () => {
    expect(() => continueAction('m7', 'Active')).toThrow('migration m7 is Active, not yet at switch-over');
    expect(() => cancelAction('m7', 'Completed')).toThrow('migration m7 already completed');
  });

  it('refuses to cancel a migration whose destination runs in post-copy, typed', () => {
    for (const phase of ['SwitchingOver', 'Completed'] as const) {
      expect(() => cancelAction('m7', phase, true)).toThrow(
        expect.objectContaining({ code: 'PAST_POINT_OF_NO_RETURN', retryable: false }),
      );
    }
    expect(cancelAction('m7', 'Failed', true)).toBe('answer');
  });
});
