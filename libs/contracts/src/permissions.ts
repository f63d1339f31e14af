import { DURABLE_CONSUMERS, hostAgentConsumers, type DurableConsumerContract } from './consumers.js';
import { type IdentityName, type ServiceName, BOOTSTRAP, GUEST_OWNER, OPERATOR } from './services.js';
import { inboxPrefix, STREAMS } from './subjects.js';

/** What one identity may publish and subscribe to on NATS; the server enforces it. */
export interface SubjectPermissions {
  publish: string[];
  subscribe: string[];
}

/** The event aggregates each service owns: only it may publish `ccm.evt.<aggregate>.>`. */
export const EVENT_AGGREGATES: Record<ServiceName, readonly string[]> = {
  'key-broker': ['key', 'attestation', 'secret', 'policy'],
  'host-agent': ['host', 'transfer'],
  'vm-lifecycle': ['vm', 'placement'],
  'container-checkpoint': ['checkpoint', 'container'],
  'network-overlay': ['overlay', 'peer'],
  'saga-coordinator': ['migration'],
  'guest-agent': ['guest'],
};

/**
 * Aggregates whose id is the publisher's own scope: a host-agent pinned to host h may publish
 * `ccm.evt.host.h.>` only. (Transfer events carry a migration id; the coordinator checks the signer's
 * host against the migration's hosts.)
 */
const SCOPED_AGGREGATES: Partial<Record<ServiceName, readonly string[]>> = {
  'host-agent': ['host'],
  'guest-agent': ['guest'],
};

/** Which services each service sends commands to (`host` and `guest` are the per-host/per-VM subjects). */
export const CALLS: Record<ServiceName, readonly (ServiceName | 'host' | 'guest')[]> = {
  'key-broker': ['host', 'guest'],
  'host-agent': [],
  'vm-lifecycle': ['host', 'key-broker', 'guest', 'network-overlay'],
  'container-checkpoint': ['guest'],
  'network-overlay': ['guest'],
  'saga-coordinator': ['key-broker', 'vm-lifecycle', 'container-checkpoint', 'network-overlay', 'host'],
  'guest-agent': ['key-broker'],
};

const STREAM_NAMES = Object.values(STREAMS).map((s) => s.name);
const API = '$JS.API';

/**
 * What every service may ask of the JetStream API: account info and whether CCM's streams exist. It
 * may not create, change, purge or delete a stream, nor read messages by sequence; publishing to a
 * stream's subjects needs no API.
 */
const JETSTREAM_SERVICE = [`${API}.INFO`, ...STREAM_NAMES.map((n) => `${API}.STREAM.INFO.${n}`)];

/**
 * The JetStream API of one durable consumer: create or update it with its own filter only (nats-server
 * 2.10's `CONSUMER.CREATE.<stream>.<name>.<filter>`), look it up, pull from it and ack its messages.
 */
export function consumerPermissions(c: DurableConsumerContract): string[] {
  const stream = STREAMS[c.stream].name;
  return [
    `${API}.CONSUMER.CREATE.${stream}.${c.durable}.${c.filterSubject}`,
    `${API}.CONSUMER.INFO.${stream}.${c.durable}`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.${c.durable}`,
    `$JS.ACK.${stream}.${c.durable}.>`,
  ];
}

/**
 * The operator reads: every stream's messages (the CLI follows CCM_EVENTS through ephemeral ordered
 * consumers; tools read parked messages in CCM_DLQ). It publishes intake requests and commands but
 * cannot change a stream, nor create a consumer on the intake work queue.
 */
const JETSTREAM_OPERATOR = [
  ...JETSTREAM_SERVICE,
  `${API}.STREAM.NAMES`,
  `${API}.STREAM.LIST`,
  ...STREAM_NAMES.flatMap((n) => [
    `${API}.STREAM.MSG.GET.${n}`,
    `${API}.DIRECT.GET.${n}`,
    `${API}.DIRECT.GET.${n}.>`,
  ]),
  ...[STREAMS.events.name, STREAMS.deadLetters.name].flatMap((n) => [
    `${API}.CONSUMER.CREATE.${n}.*.>`,
    `${API}.CONSUMER.CREATE.${n}.*`,
    `${API}.CONSUMER.INFO.${n}.*`,
    `${API}.CONSUMER.MSG.NEXT.${n}.*`,
    `$JS.ACK.${n}.>`,
  ]),
];

/** The stream bootstrap: creates and updates CCM's streams and may inspect and remove consumers. */
const JETSTREAM_BOOTSTRAP = [
  ...JETSTREAM_SERVICE,
  `${API}.STREAM.NAMES`,
  ...STREAM_NAMES.flatMap((n) => [
    `${API}.STREAM.CREATE.${n}`,
    `${API}.STREAM.UPDATE.${n}`,
    `${API}.CONSUMER.NAMES.${n}`,
    `${API}.CONSUMER.LIST.${n}`,
    `${API}.CONSUMER.INFO.${n}.*`,
    `${API}.CONSUMER.DELETE.${n}.*`,
  ]),
];

function commandSubjects(target: ServiceName | 'host' | 'guest', scope?: string): string {
  if (target === 'host' || target === 'guest') return `ccm.cmd.${target}.${scope ?? '*'}.>`;
  return `ccm.cmd.${target}.>`;
}

/**
 * The NATS permissions of an identity. A host-agent may be pinned to its host id and a guest-agent to
 * its VM id, so one compromised host can neither take another host's commands nor speak for it.
 * `extraConsumers` grants more durable consumers (tests declare their own probes this way).
 */
export function natsPermissionsFor(
  identity: IdentityName,
  scope: { hostId?: string; vmId?: string } = {},
  extraConsumers: readonly DurableConsumerContract[] = [],
): SubjectPermissions {
  const inbox = `${inboxPrefix(identity)}.>`;
  if (identity === OPERATOR) {
    return { publish: ['ccm.req.>', 'ccm.cmd.>', ...JETSTREAM_OPERATOR], subscribe: ['ccm.evt.>', inbox] };
  }
  if (identity === GUEST_OWNER) {
    // The owner talks to its key-broker only, and may follow the broker's own facts.
    return {
      publish: [`${commandSubjects('key-broker')}`],
      subscribe: [...EVENT_AGGREGATES['key-broker'].map((a) => `ccm.evt.${a}.>`), inbox],
    };
  }
  if (identity === BOOTSTRAP) return { publish: JETSTREAM_BOOTSTRAP, subscribe: [inbox] };
  const ownScope =
    identity === 'host-agent' ? scope.hostId : identity === 'guest-agent' ? scope.vmId : undefined;
  const own =
    identity === 'host-agent'
      ? commandSubjects('host', ownScope)
      : identity === 'guest-agent'
        ? commandSubjects('guest', ownScope)
        : `ccm.cmd.${identity}.>`;
  const scoped = SCOPED_AGGREGATES[identity] ?? [];
  // A host-agent's own consumers are named after its host: an unpinned one gets none.
  const perHost = identity === 'host-agent' && scope.hostId ? hostAgentConsumers(scope.hostId) : [];
  const consumers = [...(DURABLE_CONSUMERS[identity] ?? []), ...perHost, ...extraConsumers];
  return {
    publish: [
      `ccm.evt.service.${identity}.>`,
      ...EVENT_AGGREGATES[identity].map((a) =>
        scoped.includes(a) ? `ccm.evt.${a}.${ownScope ?? '*'}.>` : `ccm.evt.${a}.>`,
      ),
      ...CALLS[identity].map((t) => commandSubjects(t)),
      `ccm.dlq.${identity}.>`,
      ...JETSTREAM_SERVICE,
      ...consumers.flatMap(consumerPermissions),
    ],
    subscribe: [own, inbox],
  };
}
