import { type ServiceDefinition } from '@ccm/runtime';
import { configSchema } from './config.js';

/** The guest-agent: runs inside a confidential VM: checkpoint/restore, image encryption, in-guest WireGuard. */
export const guestAgent: ServiceDefinition<typeof configSchema> = {
  service: 'guest-agent',
  database: false,
  configSchema,
  scopeId: (c) => c.CCM_VM_ID,
};
