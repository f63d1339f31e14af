import { Controller, Get, Header, Inject } from '@nestjs/common';
import { METRICS_REGISTRY } from '@ccm/messaging';
import { type Registry } from 'prom-client';

/** `GET /metrics`: Prometheus text exposition of the process and messaging metrics. */
@Controller('metrics')
export class MetricsController {
  constructor(@Inject(METRICS_REGISTRY) private readonly registry: Registry) {}

  @Get()
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}
