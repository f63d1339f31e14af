import { type ServiceDefinition } from '@ccm/runtime';

/** The vm-lifecycle: keeps the registry of hosts and VMs, placement and phase history. */
export const vmLifecycle: ServiceDefinition = {
  service: 'vm-lifecycle',
  database: true,
};
