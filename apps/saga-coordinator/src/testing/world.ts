import { type INestApplication } from '@nestjs/common';
import { CONTAINER_MIGRATION, VM_MIGRATION, type SagaDefinition } from '@ccm/saga';
import { startTestStack, type TestStack } from '@ccm/testing';
import { afterAll, beforeAll } from 'vitest';
import { startActors, startCoordinator } from './harness.js';
import { type OperatorClient } from './operator.js';
import { type Script, type ScriptedParticipants } from './scripted-participants.js';

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
export function coordinatorWorld(env: Record<string, string> = {}, script?: Script): World {
  const world = {} as World;
  beforeAll(async () => {
    world.stack = await startTestStack();
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
