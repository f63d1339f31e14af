import { loadTrustStore } from '@ccm/keys';
import { type SagaDefinition } from '@ccm/saga';
import { OperatorClient } from './operator.js';
import { ScriptedParticipants, type Script, type Svc } from './scripted-participants.js';
import { type TestStack } from './stack.js';

/**
 * Settings that make the real sagas quick in tests: every step timeout and retry delay at 1/100
 * (pre-copy's 30 minutes become 18 s, a 1 s retry 10 ms), short leases and ticks, generous limits.
 */
export const FAST_ENV: Readonly<Record<string, string>> = Object.freeze({
  CCM_SAGA_TIME_SCALE: '0.01',
  CCM_SAGA_MIN_STEP_TIMEOUT_MS: '400',
  CCM_SAGA_LEASE_MS: '1500',
  CCM_SAGA_TICK_MS: '100',
  CCM_OUTBOX_POLL_MS: '50',
  CCM_SAGA_MAX_ACTIVE: '200',
  CCM_SAGA_MAX_PER_SOURCE_HOST: '200',
  CCM_SAGA_MAX_PER_TARGET_HOST: '200',
});

/** The operator client and scripted participants of a test stack. */
export async function startActors(
  stack: TestStack,
  script?: Script,
  without: readonly Svc[] = [],
): Promise<{ operator: OperatorClient; participants: ScriptedParticipants }> {
  const trust = await loadTrustStore(stack.keysDir);
  const actors = { connectAs: stack.connectAs, identity: stack.identity, trust };
  return {
    operator: await OperatorClient.connect(actors),
    participants: await ScriptedParticipants.start(actors, script, without),
  };
}

/** Steps whose action a participant carries out (all but the coordinator's own admit), in order. */
export function participantSteps(def: SagaDefinition): string[] {
  return def.steps.filter((s) => s.action.command !== 'admit').map((s) => s.name);
}
