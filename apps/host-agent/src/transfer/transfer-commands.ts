import { CcmError, ErrorCodes, HostErrorCodes, type TransferPhase } from '@ccm/contracts';
import { conflict } from '../errors.js';

/**
 * What `continue` and `cancel` do for a migration in a given phase. Both commands are idempotent, so
 * the answer depends on the phase alone, whether the agent still watches the migration or has already
 * filed it: a migration reads `Completed` a moment before it leaves the watch list (the source process
 * is still ending), and a repeated command in that moment must answer as it does afterwards.
 */
export type TransferCommandAction = 'act' | 'answer';

/** `continue`: act in AwaitingSwitchover; answer once switch-over has begun or completed. */
export function continueAction(migrationId: string, phase: TransferPhase): TransferCommandAction {
  switch (phase) {
    case 'AwaitingSwitchover':
      return 'act';
    case 'SwitchingOver':
    case 'Completed':
      return 'answer';
    case 'Starting':
    case 'Active':
      throw conflict(`migration ${migrationId} is ${phase}, not yet at switch-over`, true);
    default:
      throw conflict(`migration ${migrationId} is ${phase}: nothing to switch over`);
  }
}

/**
 * `cancel`: act before the end; answer a cancelled or failed migration; refuse a completed one and
 * one whose destination runs in post-copy (`postcopyCommitted`): the source cannot resume then.
 */
export function cancelAction(
  migrationId: string,
  phase: TransferPhase,
  postcopyCommitted = false,
): TransferCommandAction {
  if (postcopyCommitted && phase !== 'Cancelled' && phase !== 'Failed') {
    throw new CcmError(
      HostErrorCodes.PastPointOfNoReturn,
      `migration ${migrationId} runs in post-copy: the destination runs the guest and the source ` +
        'cannot resume, so it can no longer be cancelled',
      { retryable: false, effect: 'none' },
    );
  }
  if (phase === 'Completed') {
    throw new CcmError(
      ErrorCodes.Refused,
      `migration ${migrationId} already completed: the guest runs on the destination`,
      { retryable: false, effect: 'none' },
    );
  }
  return phase === 'Cancelled' || phase === 'Failed' ? 'answer' : 'act';
}
