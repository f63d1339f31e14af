import { type SignerName } from '@ccm/contracts';
import { type Identity, type TrustStore } from '@ccm/keys';

/** Injection token of {@link MessagingOptions}. */
export const MESSAGING_OPTIONS = Symbol.for('ccm.messaging.options');
/** Injection token of the prom-client Registry the messaging metrics register in. */
export const METRICS_REGISTRY = Symbol.for('ccm.metrics.registry');

export interface MessagingOptions {
  service: SignerName;
  /** The Postgres schema of the outbox and inbox tables, when the service has a database. */
  schema?: string;
  instanceId: string;
  /** The host id of a host-agent or the VM id of a guest-agent: their command subjects carry it. */
  scopeId?: string;
  servers: string[];
  identity: Identity;
  trust: TrustStore;
  requestTimeoutMs: number;
  /** Deliveries of a JetStream message before it is parked on the dead-letter subject. */
  maxDeliver: number;
  outboxPollMs: number;
  /**
   * How far an envelope's time may be from this receiver's clock (a stream message: from when the
   * server stored it); default `DEFAULT_ENVELOPE_MAX_SKEW_MS`.
   */
  envelopeMaxSkewMs?: number;
}
