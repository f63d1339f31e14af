import { SERVICE_CONFIG, type ServiceDefinition } from '@ccm/runtime';
import { Admission } from './admission/admission.js';
import { coordinatorConfigSchema, type CoordinatorConfig } from './config.js';
import { SagaTables1764100000000 } from './db/1764100000000-saga-tables.js';
import { ProgressSeq1795399000000 } from './db/1795399000000-progress-seq.js';
import { ObservedChains1796000000000 } from './db/1796000000000-observed-chains.js';
import { ChainWitness } from './intake/chain-witness.consumers.js';
import { IntakeConsumers } from './intake/intake.consumers.js';
import { ProgressConsumers } from './intake/progress.consumers.js';
import { MigrationsController } from './query/migrations.controller.js';
import { QueryHandlers } from './query/query.handlers.js';
import { MigrationQueries } from './query/query.service.js';
import { SagaCatalog } from './saga/catalog.js';
import { StepDispatcher } from './saga/dispatcher.js';
import { MigrationEvents } from './saga/events.js';
import { Leases } from './saga/leases.js';
import { SagaRunner } from './saga/runner.js';
import { SagaStore } from './saga/store.js';
import { Wakeups } from './saga/wakeups.js';

/**
 * The saga-coordinator: takes migrate and cancel requests from JetStream, admits migrations under
 * concurrency limits and priorities, runs the container and VM migration sagas (libs/saga) with
 * persisted state, timers, retries and compensations, shares the work between replicas with leases,
 * publishes progress events through the outbox, and answers queries over NATS and HTTP.
 */
export const sagaCoordinator: ServiceDefinition<typeof coordinatorConfigSchema> = {
  service: 'saga-coordinator',
  database: true,
  configSchema: coordinatorConfigSchema,
  migrations: [SagaTables1764100000000, ProgressSeq1795399000000, ObservedChains1796000000000],
  controllers: [MigrationsController],
  providers: [
    {
      provide: SagaCatalog,
      inject: [SERVICE_CONFIG],
      useFactory: (c: CoordinatorConfig) =>
        new SagaCatalog({ factor: c.CCM_SAGA_TIME_SCALE, minTimeoutMs: c.CCM_SAGA_MIN_STEP_TIMEOUT_MS }),
    },
    MigrationEvents,
    SagaStore,
    StepDispatcher,
    Leases,
    Wakeups,
    Admission,
    SagaRunner,
    IntakeConsumers,
    ProgressConsumers,
    ChainWitness,
    MigrationQueries,
    QueryHandlers,
  ],
};
