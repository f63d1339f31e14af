import { type ServiceDefinition } from '@ccm/runtime';
import { CheckpointService } from './checkpoint/checkpoint.service.js';
import { Guests } from './checkpoint/guests.js';
import { CheckpointSteps } from './checkpoint/step.handlers.js';
import { configSchema } from './config.js';
import { CheckpointTables1796300000000 } from './db/migrations.js';

/**
 * The container-checkpoint: drives the source and target guest-agents through the container saga's
 * checkpoint steps (iterative pre-copy, freeze and final dump, restore and resume, commit) and their
 * compensations; images travel guest to guest, sealed, never through this service.
 */
export const containerCheckpoint: ServiceDefinition<typeof configSchema> = {
  service: 'container-checkpoint',
  database: true,
  configSchema,
  migrations: [CheckpointTables1796300000000],
  providers: [Guests, CheckpointService, CheckpointSteps],
};
