import { type ServiceDefinition } from '@ccm/runtime';
import { configSchema } from './config.js';

/** The host-agent: the only part that touches a host's hypervisor and secure processor. */
export const hostAgent: ServiceDefinition<typeof configSchema> = {
  service: 'host-agent',
  database: true,
  configSchema,
  scopeId: (c) => c.CCM_HOST_ID,
};
