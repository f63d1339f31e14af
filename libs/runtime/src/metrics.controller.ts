import { Controller, Get, Header, Inject, Query, UseFilters } from '@nestjs/common';
import { CcmError, ErrorCodes } from '@ccm/contracts';
import { METRICS_REGISTRY } from '@ccm/messaging';
import { type Registry } from 'prom-client';
import { z } from 'zod';
import { CcmErrorFilter, parseInput } from './http-errors.js';

/**
 * `GET /metrics`: Prometheus text exposition of the process and messaging metrics; `?name=<metric>`
 * serves that one metric only (a cheap poll, e.g. of `ccm_handlers_in_flight`; 404 if none is named so).
 */
@Controller('metrics')
@UseFilters(CcmErrorFilter)
export class MetricsController {
  constructor(@Inject(METRICS_REGISTRY) private readonly registry: Registry) {}

  @Get()
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  metrics(@Query('name') raw?: unknown): Promise<string> {
    if (raw === undefined) return this.registry.metrics();
    const name = parseInput(z.string().min(1).max(200), 'metric name', raw);
    if (!this.registry.getSingleMetric(name))
      throw new CcmError(ErrorCodes.NotFound, `no metric named ${name}`, { retryable: false });
    return this.registry.getSingleMetricAsString(name);
  }
}
