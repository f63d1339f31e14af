import { type ServiceName } from './services.js';

/** A subject token: lowercase words, digits, dashes and underscores; never `.`, `*`, `>` or blank. */
const TOKEN = /^[a-z0-9][a-z0-9_-]*$/i;

/** Thrown when a subject builder is handed a token that would change the subject's meaning. */
export class InvalidSubjectTokenError extends Error {
  override readonly name = 'InvalidSubjectTokenError';
  constructor(readonly token: string) {
    super(`invalid subject token ${JSON.stringify(token)}: letters, digits, '-' and '_' only`);
  }
}

function tok(t: string): string {
  if (!TOKEN.test(t)) throw new InvalidSubjectTokenError(t);
  return t;
}

/** Root of every CCM subject. */
export const ROOT = 'ccm';

/**
 * How long CCM_EVENTS keeps the audit log, and what it does when full. A limit of 0 means none.
 * `discard: 'old'` drops the oldest events (they show in `ccm audit` as aged out); `'new'` refuses new
 * events instead (the outboxes keep them and retry, so nothing is lost, but migrations stall).
 */
export interface EventsRetention {
  /** Age after which an event is dropped; env CCM_EVENTS_MAX_AGE_MS. */
  maxAgeMs: number;
  /** Total size the stream may hold; env CCM_EVENTS_MAX_BYTES. */
  maxBytes: number;
  /** Number of events the stream may hold; env CCM_EVENTS_MAX_MSGS. */
  maxMsgs: number;
  /** Which side gives way at a limit; env CCM_EVENTS_DISCARD (`old` or `new`). */
  discard: 'old' | 'new';
}

/**
 * CCM_EVENTS' retention unless the bootstrap is configured otherwise: a year, 10 GiB, any number of
 * events, oldest dropped first. Set an audit-driven retention explicitly in production.
 */
export const DEFAULT_EVENTS_RETENTION: Readonly<EventsRetention> = Object.freeze({
  maxAgeMs: 365 * 24 * 3600_000,
  maxBytes: 10 * 1024 ** 3,
  maxMsgs: 0,
  discard: 'old',
});

/** Stream names: events (file storage, kept), intake requests (work queue), dead letters (kept). */
export const STREAMS = {
  /** The audit log; its limits are {@link DEFAULT_EVENTS_RETENTION} unless configured. */
  events: { name: 'CCM_EVENTS', subjects: ['ccm.evt.>'], retention: DEFAULT_EVENTS_RETENTION },
  requests: { name: 'CCM_REQUESTS', subjects: ['ccm.req.>'] },
  deadLetters: { name: 'CCM_DLQ', subjects: ['ccm.dlq.>'] },
} as const;

export const subjects = {
  /** `ccm.cmd.<service>.<verb>`: a request to any replica of a service (queue group). */
  cmd: (service: ServiceName, verb: string): string => `${ROOT}.cmd.${tok(service)}.${tok(verb)}`,
  /** `ccm.cmd.host.<hostId>.<verb>`: a request to the one host-agent of a host. */
  hostCmd: (hostId: string, verb: string): string => `${ROOT}.cmd.host.${tok(hostId)}.${tok(verb)}`,
  /** `ccm.cmd.host.<hostId>.step.<verb>`: a saga step command to one host-agent (`HOST_STEP_COMMANDS`). */
  hostStep: (hostId: string, verb: string): string => `${ROOT}.cmd.host.${tok(hostId)}.step.${tok(verb)}`,
  /** `ccm.cmd.guest.<vmId>.<verb>`: a request to the guest-agent inside one VM. */
  guestCmd: (vmId: string, verb: string): string => `${ROOT}.cmd.guest.${tok(vmId)}.${tok(verb)}`,
  /** `ccm.evt.<aggregate>.<id>.<pastTense>`: a fact, in JetStream stream CCM_EVENTS. */
  evt: (aggregate: string, id: string, pastTense: string): string =>
    `${ROOT}.evt.${tok(aggregate)}.${tok(id)}.${tok(pastTense)}`,
  /** `ccm.req.<kind>`: durable intake in CCM_REQUESTS (work queue): waits when no consumer runs. */
  req: (kind: 'migrate' | 'cancel'): string => `${ROOT}.req.${kind}`,
  /** `ccm.dlq.<service>.<consumer>`: where a consumer parks a poison message. */
  dlq: (service: ServiceName, consumer: string): string => `${ROOT}.dlq.${tok(service)}.${tok(consumer)}`,
};

/** The inbox prefix a signer uses for replies, so no other identity may subscribe to its replies. */
export function inboxPrefix(signer: string): string {
  return `_INBOX_${tok(signer).replace(/-/g, '_')}`;
}
