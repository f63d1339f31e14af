import { type INestApplication } from '@nestjs/common';
import { createServiceApp } from '@ccm/runtime';
import { FAST_ENV, type TestStack } from '@ccm/testing';
import { sagaCoordinator } from '../app.js';

/** One coordinator replica in this process (`app.init()`, no HTTP listener). */
export async function startCoordinator(
  stack: TestStack,
  env: Record<string, string> = {},
  instanceId = 'coordinator-1',
): Promise<INestApplication> {
  const { app } = await createServiceApp(
    sagaCoordinator,
    stack.env({ ...FAST_ENV, CCM_INSTANCE_ID: instanceId, ...env }),
  );
  await app.init();
  return app;
}
