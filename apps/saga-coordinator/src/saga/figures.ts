import { type MigrationFigures } from '@ccm/contracts';
import { AttemptStatus, type AttemptRecord, type SagaState } from '@ccm/saga';

type Result = Record<string, unknown>;

const num = (v: unknown): number | undefined => (typeof v === 'number' && v >= 0 ? v : undefined);

function actions(state: SagaState, step: string): readonly AttemptRecord[] {
  return state.steps.find((s) => s.name === step)?.actions ?? [];
}

function succeeded(state: SagaState, step: string): (AttemptRecord & { result?: Result }) | undefined {
  return actions(state, step).findLast((a) => a.status === AttemptStatus.Succeeded) as
    (AttemptRecord & { result?: Result }) | undefined;
}

/**
 * The figures a migration measured, from its step records: the blackout from the first freeze-dump
 * command to the cut-over reply (the audit timeline's definition), the overlay's brownout and
 * cut-over from the cut-over reply (the verify probe's brownout when the cut-over could not see the
 * target answer yet); container-checkpoint's frozen time (restore reply); for VMs
 * the switch-over step and the hypervisor's downtime. Undefined when
 * nothing was measured.
 */
export function figuresOf(state: SagaState): MigrationFigures | undefined {
  const out: { -readonly [K in keyof MigrationFigures]: MigrationFigures[K] } = {};
  const freeze = actions(state, 'freeze-dump')[0];
  const cut = succeeded(state, 'cut-over');
  if (freeze && cut?.endedAt !== undefined) out.blackoutMs = Math.max(0, cut.endedAt - freeze.sentAt);
  if (cut?.result) {
    const r = cut.result;
    const probed = num(succeeded(state, 'verify')?.result?.['brownoutMs']);
    const brownout = num(r['brownoutMs']) ?? probed;
    if (brownout !== undefined) out.brownoutMs = brownout;
    else if (r['brownoutMs'] === null) out.brownoutMs = null;
    if (num(r['cutOverMs']) !== undefined) out.cutOverMs = num(r['cutOverMs']);
    if (num(r['peersUpdated']) !== undefined) out.peersUpdated = num(r['peersUpdated']);
  }
  const frozen = num(succeeded(state, 'restore')?.result?.['frozenMs']);
  if (frozen !== undefined) out.frozenMs = frozen;
  const switchOver = succeeded(state, 'switch-over');
  if (switchOver?.endedAt !== undefined) {
    out.blackoutMs = Math.max(0, switchOver.endedAt - switchOver.sentAt);
    const downtime = num((switchOver.result?.['figures'] as Result | undefined)?.['downtimeMs']);
    if (downtime !== undefined) out.downtimeMs = downtime;
  }
  return Object.keys(out).length ? out : undefined;
}
