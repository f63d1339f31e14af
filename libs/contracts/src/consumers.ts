import { type ServiceName } from './services.js';
import { type STREAMS } from './subjects.js';

/** Which of CCM's streams a durable consumer reads (keys of {@link STREAMS}). */
export type StreamKey = keyof typeof STREAMS;

/** A durable JetStream consumer a service owns: the only one it may create, fetch from and ack on. */
export interface DurableConsumerContract {
  stream: StreamKey;
  /** Durable name, shared by every replica of the service. */
  durable: string;
  /** The one subject filter; NATS permissions bind the consumer to it. */
  filterSubject: string;
}

/**
 * Every service's durable consumers. The NATS permissions (`natsPermissionsFor`) grant each service
 * the JetStream API of exactly these, and nothing else on a stream: a compromised service can neither
 * create a consumer on another filter nor read through another service's consumer.
 */
export const DURABLE_CONSUMERS: Partial<Record<ServiceName, readonly DurableConsumerContract[]>> = {
  'saga-coordinator': [
    { stream: 'requests', durable: 'migrate-intake', filterSubject: 'ccm.req.migrate' },
    { stream: 'requests', durable: 'cancel-intake', filterSubject: 'ccm.req.cancel' },
    { stream: 'events', durable: 'progress-checkpoint', filterSubject: 'ccm.evt.checkpoint.*.progressed' },
    { stream: 'events', durable: 'progress-transfer', filterSubject: 'ccm.evt.transfer.*.progressed' },
    // Records the heads of participants' hash chains that the coordinator's events commit to (audit).
    { stream: 'events', durable: 'chain-witness', filterSubject: 'ccm.evt.>' },
  ],
  // The host registry: every host-agent's registration, heartbeats and VM phase changes.
  'vm-lifecycle': [{ stream: 'events', durable: 'host-registry', filterSubject: 'ccm.evt.host.>' }],
};

/**
 * The durable consumers of the host-agent pinned to `hostId`, one set per host (its name carries the
 * host id): every replica and restart of that host's agent reads each event once, and reads on after
 * being down. `lent-addresses` follows every host's VM phase changes so a host can free the guest
 * address it lent to a VM that moved away once that guest ends on another host.
 */
export function hostAgentConsumers(hostId: string): DurableConsumerContract[] {
  return [
    { stream: 'events', durable: `lent-addresses-${hostId}`, filterSubject: 'ccm.evt.host.*.vm-changed' },
  ];
}

/** The declared consumer `durable` of `service`; throws when it is not declared (a wiring bug). */
export function durableConsumer(service: ServiceName, durable: string): DurableConsumerContract {
  const c = DURABLE_CONSUMERS[service]?.find((d) => d.durable === durable);
  if (!c) throw new Error(`${service} declares no durable consumer ${durable} (libs/contracts consumers.ts)`);
  return c;
}
