import { createHash, createHmac, verify as verifySignature, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from './canonical.js';
import { RuleResultSchema } from './key-broker.js';
import { IdSchema } from './migration.js';
import { SignedAdmissionSchema, UnderlayEndpointSchema } from './overlay.js';

/**
 * The two-sided migration key release (ARCHITECTURE §9 step 5): broker nonces, a guest's fresh SNP
 * evidence, the release decision and its signed, hash-chained log. Nothing here carries key material:
 * the key reaches each guest sealed to the public key its evidence binds (libs/sealing).
 */

const hex = (bytes: number) =>
  z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `must be ${bytes} bytes of lowercase hex`);
const b64 = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');

/** Bytes of a broker nonce. */
export const NONCE_BYTES = 32;
/** How long a nonce may be used after it was handed out. */
export const NONCE_TTL_MS = 30_000;
/** Who may ask the key-broker for a nonce. */
export const NONCE_CALLERS = ['saga-coordinator', 'guest-agent'] as const;

/** `nonce`: a fresh single-use nonce; `migrationId` binds it to one migration when given. */
export const NonceRequestSchema = z.object({ migrationId: IdSchema.optional() });
export const NonceReplySchema = z.object({
  nonce: hex(NONCE_BYTES),
  expiresAt: z.iso.datetime({ offset: true }),
});
export type NonceReply = z.infer<typeof NonceReplySchema>;

/** Domain separation of a guest's evidence binding. */
export const GUEST_EVIDENCE_CONTEXT = 'ccm-guest-evidence-v1';

/**
 * REPORT_DATA of a guest's evidence: SHA-512("ccm-guest-evidence-v1" ‖ 0x00 ‖ public key ‖ nonce ‖
 * migration id (UTF-8)). The guest's identity key is generated in the guest; its private half never
 * leaves it, so a report binding this value proves the key is the attested guest's.
 */
export function guestEvidenceReportData(
  publicKey: Uint8Array,
  nonce: Uint8Array,
  migrationId: string,
): Buffer {
  return createHash('sha512')
    .update(GUEST_EVIDENCE_CONTEXT)
    .update(Buffer.from([0]))
    .update(publicKey)
    .update(nonce)
    .update(migrationId, 'utf8')
    .digest();
}

/**
 * The MAC an SEV/SEV-ES guest proves itself with: HMAC-SHA256 keyed by its launch-injected identity
 * secret over {@link guestEvidenceReportData} (key ‖ nonce ‖ migration, domain-separated).
 */
export function guestEvidenceMac(
  identitySecret: Uint8Array,
  publicKey: Uint8Array,
  nonce: Uint8Array,
  migrationId: string,
): Buffer {
  return createHmac('sha256', identitySecret)
    .update(guestEvidenceReportData(publicKey, nonce, migrationId))
    .digest();
}

/** guest-agent `evidence`: attest now, binding this nonce and migration. */
export const EvidenceRequestSchema = z.object({ nonce: hex(NONCE_BYTES), migrationId: IdSchema });

/** The DER certificates of an SNP endorsement chain, base64 (ARK → ASK → VCEK). */
export const SnpChainDerSchema = z.object({ ark: b64(8192), ask: b64(8192), vcek: b64(8192) });

/** What every guest's evidence names: the guest, the nonce and migration it binds, its identity key. */
const EvidenceBase = z.object({
  vmId: IdSchema,
  /** The nonce and migration the evidence claims to bind (the key-broker checks both). */
  nonce: hex(NONCE_BYTES),
  migrationId: IdSchema,
  /** The guest's X25519 identity public key (32 bytes), base64. */
  publicKey: b64(64),
  /**
   * The guest's underlay WireGuard endpoint a.b.c.d:port as it reports it (not attested: routing
   * only); the broker's overlay admission for this guest carries it as `endpoint`.
   */
  overlayEndpoint: UnderlayEndpointSchema.optional(),
});

/** An SNP guest's evidence: its report (REPORT_DATA binds key, nonce, migration) and the VCEK chain. */
export const SnpEvidenceSchema = EvidenceBase.extend({
  platform: z.literal('sev-snp'),
  /** The attestation report (1184 bytes), base64. */
  report: b64(2048),
  vcekChain: SnpChainDerSchema,
  /** Where production fetches this VCEK (AMD KDS); informative, the chain above is what is verified. */
  vcekUrl: z.string().max(500).optional(),
});

/**
 * An SEV or SEV-ES guest's evidence (no attestation report exists for them): a MAC, under the
 * identity secret the key-broker injected at the guest's attested launch (LAUNCH_SECRET), over the
 * same binding an SNP report carries ({@link guestEvidenceMac}). Only the guest that was launched
 * with the measurement the owner accepted holds that secret.
 */
export const SevEvidenceSchema = EvidenceBase.extend({
  platform: z.enum(['sev', 'sev-es']),
  /** HMAC-SHA256, lowercase hex. */
  mac: hex(32),
});

/** A guest's evidence, by its platform: an SNP report, or an SEV/SEV-ES identity-secret MAC. */
export const EvidenceReplySchema = z.discriminatedUnion('platform', [SnpEvidenceSchema, SevEvidenceSchema]);
export type SnpEvidence = z.infer<typeof SnpEvidenceSchema>;
export type SevEvidence = z.infer<typeof SevEvidenceSchema>;
export type EvidenceReply = z.infer<typeof EvidenceReplySchema>;

/** guest-agent `drop-key`: forget a migration's key (revocation). */
export const DropKeySchema = z.object({ migrationId: IdSchema });

/** `revoke-guest` (guest owner or coordinator): from now on this guest's evidence is refused. */
export const RevokeGuestRequestSchema = z.object({ vmId: IdSchema, reason: z.string().min(1).max(500) });
export const RevokeGuestReplySchema = z.object({
  vmId: IdSchema,
  revokedAt: z.iso.datetime({ offset: true }),
  /** Migrations whose key this guest was told to drop. */
  keysDropped: z.array(IdSchema),
});

/**
 * `admit-guest` (vm-lifecycle only): the broker asks the guest for fresh evidence over a nonce bound to
 * `admissionId` (a fresh id the broker makes, `adm-…`, in place of a migration id), judges it under the
 * workload's owner policy (launch measurement accepted, not revoked, key bound) and logs the decision
 * in the release log under that id.
 */
export const AdmitGuestRequestSchema = z.object({ vmId: IdSchema, workloadId: IdSchema });
export const AdmitGuestReplySchema = z.object({
  vmId: IdSchema,
  admissionId: IdSchema,
  /** Seq of the release log record of the decision. */
  decision: z.number().int().min(1),
  /** The same signed statement a release grant carries for its target, for this guest's attested key. */
  admission: SignedAdmissionSchema,
});
export type AdmitGuestReply = z.infer<typeof AdmitGuestReplySchema>;

/**
 * The workload's secret issued anew to a container migration's target guest by `rotate-keys`: 32
 * fresh bytes sealed (libs/sealing `sealMigrationKey`, bound to the migration and `secretId`) to the
 * X25519 identity key the target's evidence bound at the release. Only that guest opens it.
 */
export const SealedWorkloadSecretSchema = z.object({
  vmId: IdSchema,
  secretId: z.string().min(1).max(200),
  /** 1 for the workload's first secret, one more at each rotation: an older one is stale. */
  generation: z.number().int().min(1),
  sealed: b64(512),
});
export type SealedWorkloadSecret = z.infer<typeof SealedWorkloadSecretSchema>;

/** The `release-migration-key` reply: the key's id and who holds it (never the key). */
export const KeyReleaseResultSchema = z.object({
  keyId: z.string().min(1).max(200),
  migrationId: IdSchema,
  sourceVmId: IdSchema,
  targetVmId: IdSchema,
  /** Seq of the release log record of the grant. */
  decision: z.number().int().min(1),
  /**
   * The broker's signed statement admitting the target guest to the overlay (`add-peer` checks it):
   * its WireGuard key is the X25519 identity key its evidence bound (WireGuard keys are X25519 keys),
   * `evidenceDigest` the SHA-384 of that report (of the MAC for an SEV/SEV-ES guest). Valid for five minutes from the decision.
   */
  overlayAdmission: SignedAdmissionSchema.optional(),
});
export type KeyReleaseResult = z.infer<typeof KeyReleaseResultSchema>;

/** One guest's part of a decision: which evidence was judged (digests only). */
export const GuestEvidenceDigestSchema = z.object({
  role: z.enum(['source', 'target', 'guest']),
  vmId: IdSchema,
  /** SHA-256 of the nonce the evidence had to bind. */
  nonceSha256: hex(32).optional(),
  /** SHA-384 of the report as received. */
  reportSha384: hex(48).optional(),
  /** SHA-256 of the guest's identity public key. */
  publicKeySha256: hex(32).optional(),
  measurement: hex(48).optional(),
  /** How the guest proved itself: an SNP report, or an SEV/SEV-ES identity-secret MAC. */
  platform: z.enum(['sev-snp', 'sev', 'sev-es']).optional(),
  /** SEV/SEV-ES: the launch digest of the attested launch that gave the guest its identity secret. */
  launchDigest: hex(32).optional(),
  /** SEV/SEV-ES: the attested launch the identity secret came from. */
  launchSessionId: z.string().max(200).optional(),
  /** SEV/SEV-ES: SHA-384 of the identity-secret MAC as received (it binds the key, nonce and migration). */
  macSha384: hex(48).optional(),
  /** SNP: whose VCEK verified the report: the owner's certificate cache, or the one the guest sent. */
  vcekSource: z.enum(['guest', 'cache']).optional(),
});

/** The body of a release log record (what is signed, with `prevHash`). */
export const ReleaseDecisionSchema = z.object({
  seq: z.number().int().min(1),
  /** The migration; for an `admit-guest` decision its admission id (`adm-…`). */
  migrationId: IdSchema,
  /** What was decided: a migration key (absent, the default) or a guest's overlay admission. */
  kind: z.enum(['migration-key', 'overlay-admission']).optional(),
  workloadId: IdSchema,
  granted: z.boolean(),
  keyId: z.string().max(200).optional(),
  workloadClass: IdSchema.optional(),
  policyVersion: z.number().int().optional(),
  evidence: z.array(GuestEvidenceDigestSchema),
  rules: z.array(RuleResultSchema),
  failure: RuleResultSchema.optional(),
  decidedAt: z.iso.datetime({ offset: true }),
});
export type ReleaseDecision = z.infer<typeof ReleaseDecisionSchema>;

/** A release log record: the decision, chained to the previous record and signed by the key-broker. */
export const ReleaseRecordSchema = z.object({
  decision: ReleaseDecisionSchema,
  /** `hash` of the previous record; {@link RELEASE_LOG_GENESIS} for seq 1. */
  prevHash: hex(32),
  /** SHA-256 of the canonical JSON of `{ decision, prevHash }`. */
  hash: hex(32),
  /** base64url of the signer's Ed25519 public key (its `signerkey`). */
  signerKey: z.string().min(1).max(100),
  /** Ed25519 signature (base64) over `hash` as bytes. */
  signature: z.string().min(1).max(200),
});
export type ReleaseRecord = z.infer<typeof ReleaseRecordSchema>;

export const RELEASE_LOG_GENESIS = createHash('sha256').update('ccm-release-log-v1').digest('hex');

/** The hash a record commits to: its decision and the hash of its predecessor. */
export function releaseRecordHash(decision: ReleaseDecision, prevHash: string): string {
  return createHash('sha256').update(canonicalJson({ decision, prevHash }), 'utf8').digest('hex');
}

/** `release-log`: records from `fromSeq` on (the guest owner reads the whole log, the coordinator its migrations'). */
export const ReleaseLogRequestSchema = z.object({
  fromSeq: z.number().int().min(1).default(1),
  limit: z.number().int().min(1).max(1000).default(1000),
  migrationId: IdSchema.optional(),
});
export const ReleaseLogReplySchema = z.object({ records: z.array(ReleaseRecordSchema) });

/** Why a release log does not verify, naming the first bad record. */
export interface ReleaseLogFailure {
  /** Position in the list given. */
  readonly index: number;
  /** The record's seq as it claims (absent when the record could not be read). */
  readonly seq?: number;
  readonly reason: 'malformed' | 'hash' | 'chain' | 'order' | 'gap' | 'signer' | 'signature';
  readonly message: string;
}

export type ReleaseLogVerdict =
  | { readonly ok: true; readonly records: number; readonly head: string }
  | { readonly ok: false; readonly failure: ReleaseLogFailure };

/**
 * Verifies a release log read from its start (or from `after`, the last record already verified):
 * every record is well formed, its hash covers its decision and predecessor, the seqs run 1, 2, 3…
 * without a gap or swap, and each signature verifies with a key `signerKeyFor` trusts as the
 * key-broker's. The first bad record is named.
 */
export function verifyReleaseLog(
  records: readonly unknown[],
  signerKeyFor: (signerKey: string) => KeyObject | undefined,
  after: { seq: number; hash: string } = { seq: 0, hash: RELEASE_LOG_GENESIS },
): ReleaseLogVerdict {
  let prev = after;
  for (const [index, raw] of records.entries()) {
    const bad = (reason: ReleaseLogFailure['reason'], message: string, seq?: number): ReleaseLogVerdict => ({
      ok: false,
      failure: { index, ...(seq === undefined ? {} : { seq }), reason, message },
    });
    const parsed = ReleaseRecordSchema.safeParse(raw);
    if (!parsed.success) return bad('malformed', `record ${index} is not a release record`);
    const r = parsed.data;
    const seq = r.decision.seq;
    if (seq !== prev.seq + 1) {
      const next = prev.seq + 1;
      const later = records
        .slice(index + 1)
        .some((x) => ReleaseRecordSchema.safeParse(x).data?.decision.seq === next);
      return seq > next && !later
        ? bad('gap', `record seq ${seq} follows seq ${prev.seq}: ${seq - next} missing`, seq)
        : bad('order', `record seq ${seq} follows seq ${prev.seq}: out of order or repeated`, seq);
    }
    if (releaseRecordHash(r.decision, r.prevHash) !== r.hash)
      return bad('hash', `record seq ${seq}: its hash does not cover its content (altered)`, seq);
    if (r.prevHash !== prev.hash)
      return bad('chain', `record seq ${seq}: its predecessor hash is not record ${prev.seq}'s`, seq);
    const key = signerKeyFor(r.signerKey);
    if (!key) return bad('signer', `record seq ${seq}: signed by a key not trusted as the key-broker's`, seq);
    if (!verifySignature(null, Buffer.from(r.hash, 'hex'), key, Buffer.from(r.signature, 'base64')))
      return bad('signature', `record seq ${seq}: the signature does not verify`, seq);
    prev = { seq, hash: r.hash };
  }
  return { ok: true, records: records.length, head: prev.hash };
}
