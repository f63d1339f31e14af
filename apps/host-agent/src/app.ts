import { type ServiceDefinition } from '@ccm/runtime';
import { configSchema } from './config.js';
import { driverProvider, secureProcessorProvider } from './providers.js';
import { HostCommands } from './host/host-commands.handler.js';
import { HostService } from './host/host.service.js';
import { HostStepCommands } from './saga/host-steps.handler.js';
import { HostSteps } from './saga/host-steps.service.js';
import { SevService } from './sev/sev.service.js';
import { HostStore } from './store/host-store.js';
import {
  HostAgentTables1795400000000,
  HostAgentTransferPostcopy1796100000000,
  HostAgentVmGuestNet1797000000000,
  HostAgentVmResumeBlocked1797500000000,
  HostAgentVmGuestNetLent1797600000000,
} from './store/migrations.js';
import { TransferService } from './transfer/transfer.service.js';
import { LentAddresses } from './vm/lent-addresses.consumer.js';
import { VmService } from './vm/vm.service.js';

/** The host-agent: the only part that touches a host's hypervisor and secure processor. */
export const hostAgent: ServiceDefinition<typeof configSchema> = {
  service: 'host-agent',
  database: true,
  configSchema,
  scopeId: (c) => c.CCM_HOST_ID,
  migrations: [
    HostAgentTables1795400000000,
    HostAgentTransferPostcopy1796100000000,
    HostAgentVmGuestNet1797000000000,
    HostAgentVmResumeBlocked1797500000000,
    HostAgentVmGuestNetLent1797600000000,
  ],
  providers: [
    driverProvider,
    secureProcessorProvider,
    SevService,
    HostStore,
    VmService,
    TransferService,
    HostService,
    HostCommands,
    HostSteps,
    HostStepCommands,
    LentAddresses,
  ],
};
