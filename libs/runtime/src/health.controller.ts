import { Controller, Get, Inject, Optional } from '@nestjs/common';
import {
  HealthCheck,
  HealthCheckService,
  HealthIndicatorService,
  type HealthCheckResult,
  type HealthIndicatorFunction,
} from '@nestjs/terminus';
import { HandlerRegistry, NatsService } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { type DataSource } from 'typeorm';

/** Longest a health probe waits for the database before it reports it down. */
export const DB_PROBE_TIMEOUT_MS = 1_000;

/**
 * `GET /health`: 200 when NATS (and the database, where the service has one) answer and every durable
 * consumer is in place and getting messages; 503 otherwise (a consumer lost and not re-created, or
 * stalled at max-ack-pending, is named with the reason).
 */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly nats: NatsService,
    private readonly handlers: HandlerRegistry,
    @Optional() @Inject(DATA_SOURCE) private readonly ds?: DataSource,
  ) {}

  @Get()
  @HealthCheck()
  check(): Promise<HealthCheckResult> {
    const checks: HealthIndicatorFunction[] = [() => this.checkNats(), () => this.checkConsumers()];
    if (this.ds) checks.push(() => this.checkDb());
    return this.health.check(checks);
  }

  private async checkNats() {
    const s = this.indicators.check('nats');
    if (!this.nats.isHealthy()) return s.down({ message: 'not connected' });
    try {
      return s.up({ rttMs: await this.nats.rttMs() });
    } catch (err) {
      return s.down({ message: (err as Error).message });
    }
  }

  private async checkConsumers() {
    const s = this.indicators.check('consumers');
    const all = await this.handlers.consumerHealth();
    const details = Object.fromEntries(
      all.map((c) => [
        c.durable,
        c.lost
          ? { status: 'lost', error: c.error }
          : { status: c.stalled ? 'stalled' : 'ok', ackPending: c.ackPending, pending: c.pending },
      ]),
    );
    return all.some((c) => c.lost || c.stalled) ? s.down(details) : s.up(details);
  }

  private async checkDb() {
    const s = this.indicators.check('postgres');
    const ds = this.ds!;
    try {
      const started = Date.now();
      await Promise.race([
        ds.query('SELECT 1'),
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('timeout')), DB_PROBE_TIMEOUT_MS).unref(),
        ),
      ]);
      return s.up({ latencyMs: Date.now() - started });
    } catch (err) {
      return s.down({ message: (err as Error).message });
    }
  }
}
