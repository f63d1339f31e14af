import {
  AdmitGuestRequestSchema,
  LaunchVmRequestSchema,
  AdmitPeerRequestSchema,
  AssignWorkloadRequestSchema,
  CancelRequestSchema,
  ContainerRefSchema,
  CreateOverlayRequestSchema,
  DataPlaneProgressSchema,
  DescribeOverlayRequestSchema,
  DropKeySchema,
  EvidenceRequestSchema,
  GetVmRequestSchema,
  ListHostsRequestSchema,
  ListVmsRequestSchema,
  NonceRequestSchema,
  PlaceRequestSchema,
  ReleaseLogRequestSchema,
  RevokeGuestRequestSchema,
  type VmLifecycleVerb,
  GET_MIGRATION_VERB,
  GetMigrationRequestSchema,
  GetPolicyRequestSchema,
  ListPoliciesRequestSchema,
  ListCertificatesRequestSchema,
  PutCertificateRequestSchema,
  HOST_COMMANDS,
  HOST_EVENTS,
  type KEY_BROKER_VERBS,
  LaunchSecretRequestSchema,
  LaunchSessionRequestSchema,
  LIST_MIGRATIONS_VERB,
  ListMigrationsRequestSchema,
  LoadKeySchema,
  LoadSecretSchema,
  MigrateRequestSchema,
  MigrationRefSchema,
  OPERATOR,
  type OVERLAY_VERBS,
  PING_VERB,
  PingRequestSchema,
  PutPolicyRequestSchema,
  RestoreSchema,
  RevokePeerRequestSchema,
  RoundRefSchema,
  RunContainerSchema,
  SendRoundSchema,
  SERVICES,
  STEP_COMMANDS,
  subjects,
  GUEST_OWNER,
  GuestOverlayAddressSchema,
  GuestOverlayPeersSchema,
  GuestOverlaySamplesSchema,
  GuestOverlayUpSchema,
  GuestOverlayWatchSchema,
  type GuestVerb,
  type ServiceName,
  type SignerName,
  type StreamKey,
} from '@ccm/contracts';
import { z } from 'zod';

/** One subject a CCM service answers (a request) or consumes (a stream message), with its payload schema. */
export interface ContractSubject {
  service: ServiceName;
  subject: string;
  schema: z.ZodType;
  /** `request`: NATS request/reply; `stream`: published to a JetStream stream a durable consumer reads. */
  kind: 'request' | 'stream';
  stream?: StreamKey;
}

/** The id token of the example subject of a stream contract (`ccm.evt.transfer.<id>.progressed`). */
export const FUZZ_TOKEN = 'fz1';

/** Guest verbs that take no arguments. */
const NO_ARGS = z.object({}).loose();

/** The guest-agent's request schema per verb (a new verb without one is a type error here). */
const GUEST_REQUESTS: Record<GuestVerb, z.ZodType> = {
  identity: NO_ARGS,
  'run-container': RunContainerSchema,
  'list-containers': NO_ARGS,
  'load-key': LoadKeySchema,
  'load-secret': LoadSecretSchema,
  receive: RoundRefSchema,
  'pre-dump': SendRoundSchema,
  dump: SendRoundSchema,
  restore: RestoreSchema,
  resume: ContainerRefSchema,
  thaw: ContainerRefSchema,
  kill: ContainerRefSchema,
  discard: MigrationRefSchema,
  describe: ContainerRefSchema,
  evidence: EvidenceRequestSchema,
  'drop-key': DropKeySchema,
  'overlay-up': GuestOverlayUpSchema,
  'overlay-peers': GuestOverlayPeersSchema,
  'overlay-address': GuestOverlayAddressSchema,
  'overlay-down': NO_ARGS,
  'overlay-state': NO_ARGS,
  'overlay-watch': GuestOverlayWatchSchema,
  'overlay-samples': GuestOverlaySamplesSchema,
};

const KEY_BROKER_REQUESTS: Record<(typeof KEY_BROKER_VERBS)[keyof typeof KEY_BROKER_VERBS], z.ZodType> = {
  'put-policy': PutPolicyRequestSchema,
  'get-policy': GetPolicyRequestSchema,
  'list-policies': ListPoliciesRequestSchema,
  'put-certificate': PutCertificateRequestSchema,
  'list-certificates': ListCertificatesRequestSchema,
  'launch-session': LaunchSessionRequestSchema,
  'launch-secret': LaunchSecretRequestSchema,
  nonce: NonceRequestSchema,
  'release-log': ReleaseLogRequestSchema,
  'revoke-guest': RevokeGuestRequestSchema,
  'admit-guest': AdmitGuestRequestSchema,
};

const VM_LIFECYCLE_REQUESTS: Record<VmLifecycleVerb, z.ZodType> = {
  'list-hosts': ListHostsRequestSchema,
  'list-vms': ListVmsRequestSchema,
  'get-vm': GetVmRequestSchema,
  place: PlaceRequestSchema,
  'launch-vm': LaunchVmRequestSchema,
};

const OVERLAY_REQUESTS: Record<(typeof OVERLAY_VERBS)[keyof typeof OVERLAY_VERBS], z.ZodType> = {
  'create-overlay': CreateOverlayRequestSchema,
  'admit-peer': AdmitPeerRequestSchema,
  'revoke-peer': RevokePeerRequestSchema,
  'assign-workload': AssignWorkloadRequestSchema,
  'describe-overlay': DescribeOverlayRequestSchema,
};

/** The ping subject of a service (a host-agent's and a guest-agent's are scoped to their host and VM). */
export function pingSubject(service: ServiceName, hostId: string, vmId: string): string {
  if (service === 'host-agent') return subjects.hostCmd(hostId, PING_VERB);
  if (service === 'guest-agent') return subjects.guestCmd(vmId, PING_VERB);
  return subjects.cmd(service, PING_VERB);
}

/**
 * Every subject libs/contracts gives a service, for the host-agent of `hostId` and the guest-agent of
 * `vmId`: pings, saga step commands (STEP_COMMANDS), host commands (HOST_COMMANDS), the key-broker's,
 * overlay's and guest-agent's own verbs, the coordinator's queries, the intake requests and the
 * data-plane progress events the coordinator consumes.
 */
export function contractSubjects(hostId: string, vmId: string): ContractSubject[] {
  const req = (service: ServiceName, subject: string, schema: z.ZodType): ContractSubject => ({
    service,
    subject,
    schema,
    kind: 'request',
  });
  const out: ContractSubject[] = SERVICES.map((s) => req(s, pingSubject(s, hostId, vmId), PingRequestSchema));
  for (const [participant, verbs] of Object.entries(STEP_COMMANDS) as Array<
    [ServiceName, Record<string, { request: z.ZodType }>]
  >) {
    for (const [verb, contract] of Object.entries(verbs)) {
      const subject =
        participant === 'host-agent' ? subjects.hostStep(hostId, verb) : subjects.cmd(participant, verb);
      out.push(req(participant, subject, contract.request));
    }
  }
  for (const [verb, contract] of Object.entries(HOST_COMMANDS)) {
    out.push(req('host-agent', subjects.hostCmd(hostId, verb), contract.request));
  }
  for (const [verb, schema] of Object.entries(KEY_BROKER_REQUESTS)) {
    out.push(req('key-broker', subjects.cmd('key-broker', verb), schema));
  }
  for (const [verb, schema] of Object.entries(VM_LIFECYCLE_REQUESTS)) {
    out.push(req('vm-lifecycle', subjects.cmd('vm-lifecycle', verb), schema));
  }
  for (const [verb, schema] of Object.entries(OVERLAY_REQUESTS)) {
    out.push(req('network-overlay', subjects.cmd('network-overlay', verb), schema));
  }
  for (const [verb, schema] of Object.entries(GUEST_REQUESTS)) {
    out.push(req('guest-agent', subjects.guestCmd(vmId, verb), schema));
  }
  out.push(
    req('saga-coordinator', subjects.cmd('saga-coordinator', GET_MIGRATION_VERB), GetMigrationRequestSchema),
    req(
      'saga-coordinator',
      subjects.cmd('saga-coordinator', LIST_MIGRATIONS_VERB),
      ListMigrationsRequestSchema,
    ),
  );
  const stream = (
    subject: string,
    schema: z.ZodType,
    key: StreamKey,
    service: ServiceName = 'saga-coordinator',
  ): ContractSubject => ({
    service,
    subject,
    schema,
    kind: 'stream',
    stream: key,
  });
  out.push(
    stream(subjects.req('migrate'), MigrateRequestSchema, 'requests'),
    stream(subjects.req('cancel'), CancelRequestSchema, 'requests'),
    stream(subjects.evt('checkpoint', FUZZ_TOKEN, 'progressed'), DataPlaneProgressSchema, 'events'),
    stream(subjects.evt('transfer', FUZZ_TOKEN, 'progressed'), DataPlaneProgressSchema, 'events'),
    // vm-lifecycle's host registry reads every host-agent's own events.
    ...Object.entries(HOST_EVENTS).map(([name, schema]) =>
      stream(subjects.evt('host', hostId, name), schema, 'events', 'vm-lifecycle'),
    ),
  );
  return out;
}

/** One handler a running service wired at boot, as its `Messaging` log line states it. */
export interface WiredHandler {
  service: ServiceName;
  kind: 'request' | 'consumer';
  /** The request subject, or the consumer's filter subject. */
  subject: string;
  idempotent: boolean;
  /** The signers it takes messages from, when it names them. */
  allow?: SignerName[];
  durable?: string;
  stream?: StreamKey;
}

const REQUEST_LINE = /^request (\S+) \(queue [^,)]+(, idempotent)?(?:, from ([^)]+))?\) -> /;
const CONSUMER_LINE = /^consumer (\S+) on (\S+) \(stream (\w+)(?:, from ([^)]+))?\) -> /;

/** The handlers a service process wired, from its log lines (it logs each at level `log`). */
export function wiringFromLog(
  service: ServiceName,
  lines: ReadonlyArray<Record<string, unknown> | string>,
): WiredHandler[] {
  const out: WiredHandler[] = [];
  for (const line of lines) {
    const raw = typeof line === 'string' ? line : line['message'];
    const message = typeof raw === 'string' ? raw : '';
    const r = REQUEST_LINE.exec(message);
    if (r) {
      out.push({
        service,
        kind: 'request',
        subject: r[1],
        idempotent: !!r[2],
        ...(r[3] ? { allow: r[3].split('|') as SignerName[] } : {}),
      });
    }
    const c = CONSUMER_LINE.exec(message);
    if (c) {
      out.push({
        service,
        kind: 'consumer',
        durable: c[1],
        subject: c[2],
        stream: c[3] as StreamKey,
        idempotent: false,
        ...(c[4] ? { allow: c[4].split('|') as SignerName[] } : {}),
      });
    }
  }
  return out;
}

/** Every identity that signs, in the order a sender is picked when a handler names none. */
export const ALL_SIGNERS: readonly SignerName[] = [OPERATOR, ...SERVICES, GUEST_OWNER];
