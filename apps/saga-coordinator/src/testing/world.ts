import { type INestApplication } from '@nestjs/common';
import { type DataPlaneProgress, type VmView } from '@ccm/contracts';
import { CONTAINER_MIGRATION, VM_MIGRATION, type SagaDefinition } from '@ccm/saga';
import {
  newMigration,
  pollUntil,
  startActors,
  startTestStack,
  type OperatorClient,
  type Script,
  type ScriptedParticipants,
  type TestStack,
} from '@ccm/testing';
import { afterAll, beforeAll } from 'vitest';
import { startCoordinator } from './harness.js';
import { startHostAgents, type HostAgents } from './host-agent-processes.js';

/** Both sagas, for table-driven specs. */
export const SAGAS = [CONTAINER_MIGRATION, VM_MIGRATION] as const;

/** The workload kind a saga migrates. */
export const kindOf = (def: SagaDefinition): 'container' | 'vm' =>
  def === CONTAINER_MIGRATION ? 'container' : 'vm';

/** The compensations a rollback from step `upTo` (inclusive) runs, in the order they must run. */
export function compensationsFrom(def: SagaDefinition, upTo: number): string[] {
  return def.steps
    .slice(0, upTo + 1)
    .filter((s) => s.compensation)
    .map((s) => s.name)
    .reverse();
}

/** What a coordinator spec works with; filled in by `beforeAll`. */
export interface World {
  stack: TestStack;
  app: INestApplication;
  operator: OperatorClient;
  participants: ScriptedParticipants;
}

/**
 * Registers hooks that start a test stack, one coordinator replica with `env`, the operator client and
 * scripted participants before the suite, and stop them after it.
 */
export function coordinatorWorld(
  env: Record<string, string> = {},
  script?: Script,
  stack: Parameters<typeof startTestStack>[0] = {},
): World {
  const world = {} as World;
  beforeAll(async () => {
    world.stack = await startTestStack({ scriptedHosts: true, ...stack });
    world.app = await startCoordinator(world.stack, env);
    Object.assign(world, await startActors(world.stack, script));
  });
  afterAll(async () => {
    await world.participants?.stop();
    await world.operator?.close();
    await world.app?.close();
    await world.stack?.stop();
  });
  return world;
}

/** What a VM saga spec with real host-agents works with; filled in by `beforeAll`. */
export interface VmSagaWorld extends World {
  hosts: HostAgents;
  /** The VM `vmId` as the agent of `host` describes it (an ended one too). */
  vmOn(host: string, vmId: string): Promise<VmView | undefined>;
}

/**
 * Registers hooks that start a test stack, a REAL host-agent process per host (`agentEnv()`: hypervisor,
 * SEV, migration settings, read when the hook runs), one coordinator replica with real step timeouts
 * (verify watches the destination for up to 8 s of its 10 s), the operator client and scripted
 * key-broker, vm-lifecycle and network-overlay (`script`, made once the agents run, e.g. from their
 * chains); every host-agent step is answered by the agents themselves. All stop after the suite.
 */
export function vmSagaWorld(
  hostIds: readonly string[],
  agentEnv: () => Record<string, string>,
  script?: (hosts: HostAgents) => Promise<Script>,
): VmSagaWorld {
  const world = {
    vmOn: async (host: string, vmId: string) =>
      (await world.hosts.send(host, 'describe', { vmId, all: true })).vms.find((v) => v.vmId === vmId),
  } as VmSagaWorld;
  beforeAll(async () => {
    world.stack = await startTestStack({ hostIds: [...hostIds] });
    world.hosts = await startHostAgents(world.stack, hostIds, agentEnv());
    world.app = await startCoordinator(world.stack, {
      CCM_SAGA_TIME_SCALE: '1',
      CCM_SAGA_MIN_STEP_TIMEOUT_MS: '1000',
    });
    const answers = script ? await script(world.hosts) : undefined;
    Object.assign(world, await startActors(world.stack, answers, ['host-agent']));
  });
  afterAll(async () => {
    await world.participants?.stop();
    await world.operator?.close();
    await world.app?.close();
    await world.hosts?.stop();
    await world.stack?.stop();
  });
  return world;
}

/**
 * Starts a container migration of `workload` (host-a → host-b) whose pre-copy the participant holds
 * until `release` is called; resolves once pre-copy has been sent.
 */
export async function migrationHeldAtPreCopy(
  w: World,
  workload: string,
): Promise<{ id: string; release: () => void }> {
  let release!: () => void;
  const hold = new Promise<void>((r) => (release = r));
  const { key, id } = newMigration();
  w.participants.plan(id, (c) => (c.step === 'pre-copy' ? { kind: 'hold', until: hold } : undefined));
  await w.operator.migrate({ workload, sourceHost: 'host-a', targetHost: 'host-b' }, key);
  await pollUntil('pre-copy to start', () =>
    w.participants.receivedFor(id).some((c) => c.step === 'pre-copy'),
  );
  return { id, release };
}

/** container-checkpoint's report of pre-dump round `round` of 2 (1000 bytes a round). */
export const preDumpRound = (migrationId: string, round: number): DataPlaneProgress => ({
  migrationId,
  step: 'pre-copy',
  stage: `pre-dump round ${round}`,
  round,
  bytesTransferred: round * 1000,
  bytesTotal: 2000,
  at: new Date().toISOString(),
});
