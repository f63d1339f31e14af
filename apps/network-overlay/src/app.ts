import { type ServiceDefinition } from '@ccm/runtime';

/** The network-overlay: owns the WireGuard overlay: addresses, peers and cut-over. */
export const networkOverlay: ServiceDefinition = {
  service: 'network-overlay',
  database: true,
};
