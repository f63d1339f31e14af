/**
 * Every CCM service. The name is its NATS identity (one NKEY user and one Ed25519 signing key each), its
 * queue group, its Postgres schema (dashes become underscores) and the `source` of what it signs.
 */
export const SERVICES = [
  'key-broker',
  'host-agent',
  'vm-lifecycle',
  'container-checkpoint',
  'network-overlay',
  'saga-coordinator',
  'guest-agent',
] as const;

export type ServiceName = (typeof SERVICES)[number];

/** The `ccm` CLI acts for a human operator: it signs with an operator key, not a service key. */
export const OPERATOR = 'operator' as const;

/**
 * The guest owner: the one identity that may change the key-broker's owner policies (trusted roots,
 * reference measurements, where a workload may migrate). Distinct from the operator on purpose: the
 * operator runs the hosts and is trusted for availability only (ARCHITECTURE §1).
 */
export const GUEST_OWNER = 'guest-owner' as const;

/** The identities that act for people rather than run as services: keys kept out of service volumes. */
export const PERSON_SIGNERS = [OPERATOR, GUEST_OWNER] as const;

/** A signer is a service, the operator identity used by the CLI and tools, or the guest owner. */
export type SignerName = ServiceName | typeof OPERATOR | typeof GUEST_OWNER;

/**
 * The admin identity that creates and changes CCM's JetStream streams (the stack launcher, the compose
 * `streams` job, test stacks). It has a NATS user only for that: it signs nothing, is in no trust
 * store, and no service holds its keys, so no service identity can change or shrink a stream.
 */
export const BOOTSTRAP = 'bootstrap' as const;

/** Every identity ccm-keys makes: the signers and the stream bootstrap. */
export type IdentityName = SignerName | typeof BOOTSTRAP;

export function isServiceName(v: string): v is ServiceName {
  return (SERVICES as readonly string[]).includes(v);
}

/** The Postgres schema a service owns: `key-broker` → `key_broker`. */
export function schemaFor(service: ServiceName): string {
  return service.replace(/-/g, '_');
}
