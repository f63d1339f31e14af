export {
  createServiceApp,
  runService,
  jsonLogger,
  SERVICE_CONFIG,
  EXIT_CONFIG,
  type ServiceDefinition,
} from './service.js';
export { HealthController } from './health.controller.js';
export { MetricsController } from './metrics.controller.js';
export { PingHandler } from './ping.handler.js';
export { CcmErrorFilter, parseInput } from './http-errors.js';
export { Phases } from './phases.js';
