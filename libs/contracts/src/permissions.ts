import { type ServiceName, type SignerName, GUEST_OWNER, OPERATOR } from './services.js';
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

/** Which services each service sends commands to (`host` and `guest` are the per-host/per-VM subjects). */
export const CALLS: Record<ServiceName, readonly (ServiceName | 'host' | 'guest')[]> = {
  'key-broker': ['host'],
  'host-agent': [],
  'vm-lifecycle': ['host', 'key-broker'],
  'container-checkpoint': ['guest'],
  'network-overlay': ['guest'],
  'saga-coordinator': ['key-broker', 'vm-lifecycle', 'container-checkpoint', 'network-overlay', 'host'],
  'guest-agent': ['key-broker'],
};

/**
 * JetStream API subjects every identity needs to create CCM's streams, bind durable consumers, fetch
 * and acknowledge; limited to CCM's own streams (NATS wildcards match whole tokens, so each is named).
 */
const STREAM_NAMES = Object.values(STREAMS).map((s) => s.name);
const JETSTREAM_CLIENT = [
  '$JS.API.INFO',
  ...STREAM_NAMES.flatMap((n) => [
    `$JS.API.STREAM.INFO.${n}`,
    `$JS.API.STREAM.CREATE.${n}`,
    `$JS.API.STREAM.UPDATE.${n}`,
    `$JS.API.STREAM.MSG.GET.${n}`,
    `$JS.API.DIRECT.GET.${n}`,
    `$JS.API.DIRECT.GET.${n}.>`,
    `$JS.API.CONSUMER.*.${n}`,
    `$JS.API.CONSUMER.*.${n}.>`,
    `$JS.API.CONSUMER.DURABLE.CREATE.${n}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.${n}.>`,
    `$JS.ACK.${n}.>`,
  ]),
];

function commandSubjects(target: ServiceName | 'host' | 'guest', scope?: string): string {
  if (target === 'host' || target === 'guest') return `ccm.cmd.${target}.${scope ?? '*'}.>`;
  return `ccm.cmd.${target}.>`;
}

/**
 * The NATS permissions of an identity. A host-agent may be pinned to its host id and a guest-agent to
 * its VM id, so one compromised host cannot take another host's commands.
 */
export function natsPermissionsFor(
  signer: SignerName,
  scope: { hostId?: string; vmId?: string } = {},
): SubjectPermissions {
  const inbox = `${inboxPrefix(signer)}.>`;
  if (signer === OPERATOR) {
    return {
      publish: ['ccm.req.>', 'ccm.cmd.>', ...JETSTREAM_CLIENT, '$JS.API.STREAM.NAMES', '$JS.API.STREAM.LIST'],
      subscribe: ['ccm.evt.>', inbox],
    };
  }
  if (signer === GUEST_OWNER) {
    // The owner talks to its key-broker only, and may follow the broker's own facts.
    return {
      publish: [`${commandSubjects('key-broker')}`],
      subscribe: [...EVENT_AGGREGATES['key-broker'].map((a) => `ccm.evt.${a}.>`), inbox],
    };
  }
  const own =
    signer === 'host-agent'
      ? commandSubjects('host', scope.hostId)
      : signer === 'guest-agent'
        ? commandSubjects('guest', scope.vmId)
        : `ccm.cmd.${signer}.>`;
  return {
    publish: [
      `ccm.evt.service.${signer}.>`,
      ...EVENT_AGGREGATES[signer].map((a) => `ccm.evt.${a}.>`),
      ...CALLS[signer].map((t) => commandSubjects(t)),
      `ccm.dlq.${signer}.>`,
      ...JETSTREAM_CLIENT,
    ],
    subscribe: [own, inbox],
  };
}
