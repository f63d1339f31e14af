import { type FactoryProvider } from '@nestjs/common';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type HostAgentConfig } from './config.js';
import { type HypervisorDriver } from './drivers/driver.js';
import { QemuDriver } from './drivers/qemu-driver.js';
import { SimDriver } from './drivers/sim-driver.js';
import { openSecureProcessor, sevLabDir, sevStateDir } from './sev/open-secure-processor.js';
import { SECURE_PROCESSOR } from './sev/sev.service.js';
import { type SecureProcessor } from './sev/secure-processor.js';
import { HYPERVISOR_DRIVER } from './vm/vm.service.js';

/** The secure processor CCM_SEV asks for (the firmware, the software secure processor, or none). */
export const secureProcessorProvider: FactoryProvider<Promise<SecureProcessor | undefined>> = {
  provide: SECURE_PROCESSOR,
  inject: [SERVICE_CONFIG],
  useFactory: (config: HostAgentConfig) => openSecureProcessor(config),
};

/** The hypervisor driver CCM_HYPERVISOR names. */
export const driverProvider: FactoryProvider<HypervisorDriver> = {
  provide: HYPERVISOR_DRIVER,
  inject: [SERVICE_CONFIG, SECURE_PROCESSOR],
  useFactory: (config: HostAgentConfig, sp: SecureProcessor | undefined) =>
    config.CCM_HYPERVISOR === 'sim'
      ? new SimDriver({
          entry: config.CCM_SIM_VM_ENTRY,
          sevStateDir: sp?.mode === 'emulated' ? sevStateDir(config) : undefined,
          ...(config.CCM_SIM_GUEST_AGENT
            ? {
                guestAgent: {
                  labDir: sevLabDir(config),
                  image: config.CCM_SIM_GUEST_IMAGE,
                  entry: config.CCM_SIM_GUEST_AGENT_ENTRY,
                },
              }
            : {}),
        })
      : new QemuDriver({
          binary: config.CCM_QEMU_BIN,
          accel: config.CCM_QEMU_ACCEL,
          firmware: config.CCM_VM_FIRMWARE,
          hardwareSev: sp?.mode === 'hardware',
          cbitpos: sp?.features.cbitpos,
          reducedPhysBits: sp?.features.reducedPhysBits,
        }),
};
