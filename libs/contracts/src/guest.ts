import { z } from 'zod';
import { IdSchema } from './migration.js';
import { Ipv4Schema } from './overlay.js';

/**
 * The guest-agent's contract: commands on `ccm.cmd.guest.<vmId>.<verb>` (ARCHITECTURE §2, §9). The
 * guest-agent lives in the guest owner's domain; nothing here carries key material in the clear: the
 * migration key arrives sealed to the guest's identity key (libs/sealing `sealMigrationKey`), and images
 * travel guest to guest over TCP as sealed chunks, never over NATS.
 */
export const GUEST_VERBS = {
  /** The guest's identity public key (X25519, base64), which attestation binds. */
  identity: 'identity',
  /**
   * Start a container: a workload holding `pages` 4 KiB pages and dirtying `dirtyPagesPerSec` of them
   * (sim: a process model; runc: a Node process in a runc container, docs/container-checkpoint.md).
   */
  runContainer: 'run-container',
  listContainers: 'list-containers',
  /** SNP evidence binding the identity key to a broker nonce and a migration (key-broker only). */
  evidence: 'evidence',
  /** Forget one migration's key (revocation by the key-broker). */
  dropKey: 'drop-key',
  /** Take the migration key sealed to this guest's identity key. */
  loadKey: 'load-key',
  /** Take the workload's secret sealed to this guest's identity key (key-broker, after a move). */
  loadSecret: 'load-secret',
  /** Target: listen for one round's sealed image stream; replies the address to send to. */
  receive: 'receive',
  /** Source: pre-dump round N (container keeps running) and stream it to the target. */
  preDump: 'pre-dump',
  /** Source: freeze, final dump, stream it; the container stays frozen until kill or thaw. */
  dump: 'dump',
  /** Target: restore from the received rounds, not resumed. */
  restore: 'restore',
  /** Target: resume the restored container. */
  resume: 'resume',
  /** Source: thaw the frozen container and continue (rollback). */
  thaw: 'thaw',
  kill: 'kill',
  /** Drop a migration's images and key. */
  discard: 'discard',
  describe: 'describe',
  /** Overlay (network-overlay only, libs/contracts/src/guest-overlay.ts): bring up the guest's wg interface. */
  overlayUp: 'overlay-up',
  /** Overlay: add, change or remove peers in one configuration step. */
  overlayPeers: 'overlay-peers',
  /** Overlay: add or remove a workload /32 on the guest's own interface (cut-over, rollback). */
  overlayAddress: 'overlay-address',
  /** Overlay: drop every peer and the interface (the guest left or was revoked). */
  overlayDown: 'overlay-down',
  /** Overlay: the interface's public state (key, addresses, peers; never the private key). */
  overlayState: 'overlay-state',
  /** Overlay: start probing ip:port from this guest back to back (a cut-over's observer). */
  overlayWatch: 'overlay-watch',
  /** Overlay: the samples of a watch from an index on, and optionally stop it. */
  overlaySamples: 'overlay-samples',
} as const;
export type GuestVerb = (typeof GUEST_VERBS)[keyof typeof GUEST_VERBS];

/** Error codes of guest-agent replies beyond `ErrorCodes`. The CHUNK_* codes are libs/sealing's. */
export const GuestErrorCodes = {
  /** The sealed key does not open with this guest's identity key (not for this guest, or altered). */
  KeyUnsealFailed: 'KEY_UNSEAL_FAILED',
  /** No migration key loaded for this migration. */
  NoMigrationKey: 'NO_MIGRATION_KEY',
  /** The image stream was refused: `details.chunk` names the chunk, `details.sealing` the sealing code. */
  StreamRefused: 'STREAM_REFUSED',
  /** Restore refused: a round is missing or was refused. */
  ImagesIncomplete: 'IMAGES_INCOMPLETE',
  /** This guest has no secure processor to attest with (`CCM_GUEST_SEV=none`). */
  NoAttestation: 'NO_ATTESTATION',
  /**
   * The guest's secret table (its attested launch's secrets) is malformed: the table itself, or an
   * entry the guest-agent reads (`details.guid`, `details.reason`). The guest-agent refuses to start.
   */
  SecretTableInvalid: 'SECRET_TABLE_INVALID',
  /** The container is not in a state that allows the command (details.state says which). */
  BadContainerState: 'BAD_CONTAINER_STATE',
  /**
   * runc or CRIU failed (runc driver): `details.action` names the step (`runc dump`, `runc restore`, …),
   * `details.reason` CRIU's reason code read from its log (libs/criu `CriuReason`), `details.log` the
   * log line that says why.
   */
  ContainerRuntimeFailed: 'CONTAINER_RUNTIME_FAILED',
} as const;

export const ContainerIdSchema = IdSchema;
const b64 = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');

export const ContainerStateSchema = z.enum(['running', 'frozen', 'restored', 'killed']);
export type ContainerState = z.infer<typeof ContainerStateSchema>;

export const ContainerInfoSchema = z.object({
  id: ContainerIdSchema,
  state: ContainerStateSchema,
  pages: z.number().int(),
  /** The workload's counter (the test's proof that the process carried on). */
  counter: z.number().int(),
  migrationId: IdSchema.optional(),
  /**
   * The container runtime's own time to restore it (runc driver: `runc restore`, i.e. CRIU's restore,
   * without unpacking the rounds or the resume), on a container restored here; absent otherwise.
   */
  restoreMs: z.number().nonnegative().optional(),
  /**
   * The parts of the restore or resume this reply answers (runc driver), in ms by name: on `restore`
   * validate, write, prepare, criuRestore, …; on `resume` continue, unlock, …. Absent otherwise.
   */
  phasesMs: z.record(z.string(), z.number().nonnegative()).optional(),
  /** On a `restore` with `resume: true`: the resume's parts (`phasesMs` holds the restore's). */
  resumePhasesMs: z.record(z.string(), z.number().nonnegative()).optional(),
});
export type ContainerInfo = z.infer<typeof ContainerInfoSchema>;

export const IdentityReplySchema = z.object({ vmId: IdSchema, publicKey: b64(64) });

/**
 * A container's own network (runc driver): its overlay address, a /32 on its end of a veth pair in a
 * network namespace the guest-agent makes, routed to by the guest; the workload serves TCP on `port`
 * (each line it reads is answered with its count). The namespace moves with the container: the target
 * makes the same one before the restore, and established connections are restored with it.
 */
export const ContainerNetworkSchema = z.object({
  address: Ipv4Schema.refine((a) => {
    const o = a.split('.').map(Number);
    return o.every((n) => n <= 255) && o[0] !== 0 && o[0] !== 127 && o[0] < 224 && o[3] !== 0 && o[3] !== 255;
  }, 'must be a unicast IPv4 address (not 0/8, 127/8, multicast, .0 or .255)'),
  port: z.number().int().min(1).max(65_535),
});
export type ContainerNetwork = z.infer<typeof ContainerNetworkSchema>;

export const RunContainerSchema = z.object({
  id: ContainerIdSchema,
  /** The workload's heap in 4 KiB pages (32 MiB = 8192). */
  pages: z.number().int().min(1).max(262_144),
  /** Heap pages rewritten per second. */
  dirtyPagesPerSec: z.number().int().min(0).max(1_000_000),
  /** Its own network and TCP service; without it the container has only loopback. */
  network: ContainerNetworkSchema.optional(),
});

export const ContainerRefSchema = z.object({ id: ContainerIdSchema });

export const LoadKeySchema = z.object({
  migrationId: IdSchema,
  keyId: z.string().min(1).max(200),
  /** libs/sealing's sealed key (100 bytes), base64. */
  sealedKey: b64(200),
});

/**
 * `load-secret` (key-broker only): the workload's secret, issued anew by `rotate-keys` after the
 * workload moved into this guest, sealed to its identity key (`SealedWorkloadSecretSchema`, with the
 * workload and migration it is bound to). The reply proves which secret the guest holds by its digest.
 */
export const LoadSecretSchema = z.object({
  workloadId: IdSchema,
  migrationId: IdSchema,
  secretId: z.string().min(1).max(200),
  generation: z.number().int().min(1),
  /** libs/sealing's sealed key format (100 bytes), base64. */
  sealed: b64(200),
});
export const LoadSecretReplySchema = z.object({
  secretId: z.string().min(1).max(200),
  generation: z.number().int().min(1),
  /** SHA-256 of the secret as the guest unsealed it, lowercase hex. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});

export const RoundRefSchema = z.object({
  migrationId: IdSchema,
  containerId: ContainerIdSchema,
  /** 1.. for pre-dump rounds; the final dump is the round after the last pre-dump. */
  round: z.number().int().min(1).max(1000),
});

export const ReceiveReplySchema = z.object({ host: z.string(), port: z.number().int().min(1).max(65535) });

export const StreamTargetSchema = z.object({
  host: z.string().min(1).max(255),
  port: z.number().int().min(1).max(65535),
});

export const SendRoundSchema = RoundRefSchema.extend({ target: StreamTargetSchema });

export const RoundReportSchema = z.object({
  round: z.number().int(),
  pages: z.number().int(),
  imageBytes: z.number().int(),
  chunks: z.number().int(),
  durationMs: z.number(),
  /** Pages dirtied since this round's snapshot (what the next round would send). */
  dirtyPages: z.number().int(),
  /**
   * The container runtime's own time for the round (runc driver: `runc checkpoint`, i.e. CRIU's
   * pre-dump or dump, without the freeze and the stream); absent with the sim driver.
   */
  runtimeMs: z.number().nonnegative().optional(),
  /**
   * The round's parts in the source guest, in ms by name (describe, lock, pause, criuDump, pack,
   * stream: sealing, sending and the target's verdict); absent with a driver that does not time them.
   */
  phasesMs: z.record(z.string(), z.number().nonnegative()).optional(),
});
export type RoundReport = z.infer<typeof RoundReportSchema>;

export const RestoreSchema = z.object({
  migrationId: IdSchema,
  containerId: ContainerIdSchema,
  /** The rounds the target must hold, 1..rounds (the last is the final dump). */
  rounds: z.number().int().min(1).max(1000),
  /**
   * Resume the restored container in the same command (one guest call less inside the frozen time);
   * absent or false: it waits restored for `resume`. A resume that fails after the restore is answered
   * with `details.restored: true` (the container is there, restored).
   */
  resume: z.boolean().optional(),
});

export const MigrationRefSchema = z.object({ migrationId: IdSchema });
