import { type ServiceDefinition } from '@ccm/runtime';
import { configSchema } from './config.js';
import { VmLifecycleTables1796300000000 } from './db/migrations.js';
import { AttestedLaunch } from './provision/attested-launch.js';
import { LaunchHandlers } from './provision/launch.handlers.js';
import { ProvisionHandlers } from './provision/provision.handlers.js';
import { RegistryController } from './query/registry.controller.js';
import { RegistryHandlers } from './query/registry.handlers.js';
import { RegistryQueries } from './query/registry.queries.js';
import { HostEventsConsumer } from './registry/host-events.consumer.js';

/**
 * The vm-lifecycle: the registry of hosts (from the host-agents' registrations and heartbeats) and of
 * confidential VMs (desired vs observed phase, history, workloads), placement, and the container
 * saga's `provision-vm` / `destroy-vm` steps, and the operator's `launch-vm` of a workload's first VM.
 */
export const vmLifecycle: ServiceDefinition<typeof configSchema> = {
  service: 'vm-lifecycle',
  database: true,
  configSchema,
  migrations: [VmLifecycleTables1796300000000],
  providers: [
    RegistryQueries,
    HostEventsConsumer,
    RegistryHandlers,
    AttestedLaunch,
    ProvisionHandlers,
    LaunchHandlers,
  ],
  controllers: [RegistryController],
};
