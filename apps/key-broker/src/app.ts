import { APP_FILTER } from '@nestjs/core';
import { type ServiceDefinition } from '@ccm/runtime';
import { AttestHandler } from './attest/attest.handler.js';
import { TransportHandler } from './attest/transport.handler.js';
import { KeyBrokerTables1795500000000 } from './db/migrations.js';
import { KeyBrokerRotation1796200000000 } from './db/1796200000000-rotation.js';
import { KeyBrokerRelease1796300000000 } from './db/1796300000000-key-release.js';
import { KeyBrokerCertificateCache1796400000000 } from './db/1796400000000-certificate-cache.js';
import { KeyBrokerRotationHandover1796510000000 } from './db/1796510000000-rotation-handover.js';
import { KeyBrokerVlekCache1796520000000 } from './db/1796520000000-vlek-cache.js';
import { KeyBrokerHttpReplay1796530000000 } from './db/1796530000000-http-replay.js';
import { KeyBrokerMigrationRevocation1796540000000 } from './db/1796540000000-migration-revocation.js';
import { keyBrokerConfigSchema } from './config.js';
import { guestAgentIdentityProvider } from './launch/guest-agent-identity.js';
import { LaunchHandler } from './launch/launch.handler.js';
import { PolicyHandlers } from './policy/policy.handlers.js';
import { PolicyHttpController, PolicyHttpErrorFilter } from './policy/policy-http.controller.js';
import { PolicyStore } from './policy/policy.store.js';
import { HttpReplays } from './policy/http-replays.js';
import { CertificateCache } from './release/certificate-cache.js';
import { GuestRevocations } from './release/guest-revocations.js';
import { MigrationKeys } from './release/migration-keys.js';
import { NonceHandler, NonceStore } from './release/nonces.js';
import { ReleaseHandler } from './release/release.handler.js';
import { ReleaseLog } from './release/release-log.js';
import { RotateHandler } from './rotate/rotate.handler.js';

/**
 * The key-broker: the guest owner's trust anchor. It keeps the owner's policies in its own schema and
 * judges platforms and guests from evidence it fetched and verified itself; it releases a migration's
 * key only to the two guests whose fresh evidence it verified.
 */
export const keyBroker: ServiceDefinition<typeof keyBrokerConfigSchema> = {
  service: 'key-broker',
  database: true,
  configSchema: keyBrokerConfigSchema,
  migrations: [
    KeyBrokerTables1795500000000,
    KeyBrokerRotation1796200000000,
    KeyBrokerRelease1796300000000,
    KeyBrokerCertificateCache1796400000000,
    KeyBrokerRotationHandover1796510000000,
    KeyBrokerVlekCache1796520000000,
    KeyBrokerHttpReplay1796530000000,
    KeyBrokerMigrationRevocation1796540000000,
  ],
  controllers: [PolicyHttpController],
  providers: [
    { provide: APP_FILTER, useClass: PolicyHttpErrorFilter },
    PolicyStore,
    HttpReplays,
    PolicyHandlers,
    AttestHandler,
    TransportHandler,
    guestAgentIdentityProvider,
    LaunchHandler,
    RotateHandler,
    NonceStore,
    NonceHandler,
    ReleaseLog,
    MigrationKeys,
    GuestRevocations,
    CertificateCache,
    ReleaseHandler,
  ],
};
