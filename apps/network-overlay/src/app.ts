import { type FactoryProvider } from '@nestjs/common';
import { MessageBus } from '@ccm/messaging';
import { SERVICE_CONFIG, type ServiceDefinition } from '@ccm/runtime';
import { configSchema, type OverlayConfig } from './config.js';
import { OverlayTables1795500000000 } from './db/migrations.js';
import { OVERLAY_DRIVER, type OverlayDriver } from './driver/driver.js';
import { GuestAgentDriver } from './driver/guest-agent-driver.js';
import { SimOverlayDriver } from './driver/sim-driver.js';
import { OverlayEvents } from './overlay/events.js';
import { OverlayHandlers } from './overlay/overlay.handlers.js';
import { OverlayService } from './overlay/overlay.service.js';
import { StepHandlers } from './overlay/step.handlers.js';

/** The driver CCM_OVERLAY_DRIVER names. */
export const driverProvider: FactoryProvider<OverlayDriver> = {
  provide: OVERLAY_DRIVER,
  inject: [SERVICE_CONFIG, MessageBus],
  useFactory: (config: OverlayConfig, bus: MessageBus) => {
    switch (config.CCM_OVERLAY_DRIVER) {
      case 'sim':
        return new SimOverlayDriver();
      case 'guest':
        return new GuestAgentDriver(bus, config.CCM_OVERLAY_GUEST_TIMEOUT_MS);
    }
  },
};

/** The network-overlay: owns the WireGuard overlay: addresses, peers, admission and cut-over. */
export const networkOverlay: ServiceDefinition<typeof configSchema> = {
  service: 'network-overlay',
  database: true,
  configSchema,
  migrations: [OverlayTables1795500000000],
  providers: [driverProvider, OverlayEvents, OverlayService, OverlayHandlers, StepHandlers],
};
