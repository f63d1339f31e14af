import { type ServiceDefinition } from '@ccm/runtime';

/** The container-checkpoint: drives guest-agents through pre-dump, dump, streaming and restore. */
export const containerCheckpoint: ServiceDefinition = {
  service: 'container-checkpoint',
  database: true,
};
