import { randomUUID } from 'node:crypto';
import { migrationIdFor, type StepCommand } from '@ccm/contracts';

/**
 * A saga step command as the coordinator builds it, for participants' tests: a fresh migration of
 * container `web-1` from host-a to host-b, first attempt of `step`, with an empty context.
 */
export function stepCommand(over: Partial<StepCommand> = {}): StepCommand {
  return {
    migrationId: migrationIdFor(randomUUID()),
    saga: 'container-migration@1',
    step: 'attest-target',
    kind: 'action',
    attempt: 1,
    workload: { id: 'web-1', kind: 'container' },
    sourceHost: 'host-a',
    targetHost: 'host-b',
    context: {},
    ...over,
  };
}
