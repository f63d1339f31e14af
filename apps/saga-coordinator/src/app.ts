import { type ServiceDefinition } from '@ccm/runtime';

/** The saga-coordinator: runs the container and VM migration sagas. */
export const sagaCoordinator: ServiceDefinition = {
  service: 'saga-coordinator',
  database: true,
};
