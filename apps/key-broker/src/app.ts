import { type ServiceDefinition } from '@ccm/runtime';

/** The key-broker: verifies platform evidence and releases keys only to attested guests. */
export const keyBroker: ServiceDefinition = {
  service: 'key-broker',
  database: true,
};
