import { z } from 'zod';
import { IdSchema } from './migration.js';
import { subjects } from './subjects.js';

/**
 * The key-broker's own contract (ARCHITECTURE §1, §2): the guest owner's policies, the attestation
 * verdicts it publishes, and its error codes. Its saga-step commands are in `STEP_COMMANDS`. Binary
 * values travel as lowercase hex (digests, pins) or base64 (certificates), never as key material.
 */

/** Verbs on `ccm.cmd.key-broker.<verb>` besides the saga steps. */
export const KEY_BROKER_VERBS = {
  /** Guest owner: store a new version of a workload class's policy. */
  putPolicy: 'put-policy',
  /** Guest owner: read a workload class's policy (latest or one version). */
  getPolicy: 'get-policy',
  /** Guest owner: the latest version of every workload class's policy. */
  listPolicies: 'list-policies',
  /** Guest owner: put a VCEK or CEK into the broker's certificate cache (no network: the owner fetches). */
  putCertificate: 'put-certificate',
  /** Guest owner: what the certificate cache holds, with the AMD KDS URL of each. */
  listCertificates: 'list-certificates',
  /** vm-lifecycle: GODH and session blob for an attested SEV launch on a host the broker attests. */
  launchSession: 'launch-session',
  /** vm-lifecycle: check a launch's measurement and, when accepted, seal its LAUNCH_SECRET. */
  launchSecret: 'launch-secret',
  /** Coordinator and guest-agents: a fresh single-use nonce (32 bytes, 30 s). */
  nonce: 'nonce',
  /** Guest owner and coordinator: the signed, hash-chained release log. */
  releaseLog: 'release-log',
  /** Guest owner and coordinator: refuse a guest's evidence from now on and make it drop its keys. */
  revokeGuest: 'revoke-guest',
  /**
   * vm-lifecycle: judge a guest's fresh evidence under its workload's owner policy and, when accepted,
   * sign the overlay admission statement for its attested key (a first placement, not a migration).
   */
  admitGuest: 'admit-guest',
} as const;

/** Who may ask for a guest's first overlay admission: the vm-lifecycle launching it, no one else. */
export const ADMIT_GUEST_CALLERS = ['vm-lifecycle'] as const;

/** Who may run attested launches: the VM registry, and the coordinator provisioning a target VM. */
export const LAUNCH_CALLERS = ['vm-lifecycle', 'saga-coordinator'] as const;

export const keyBrokerSubject = (verb: string): string => subjects.cmd('key-broker', verb);

/** Event aggregates of the key-broker (see `EVENT_AGGREGATES`). */
export const POLICY_AGGREGATE = 'policy' as const;
export const ATTESTATION_AGGREGATE = 'attestation' as const;

/** Error codes of key-broker replies, beyond the common `ErrorCodes`. */
export const KeyBrokerErrorCodes = {
  /** The evidence did not satisfy the owner's policy; details name the failed rule (and link). */
  AttestationRefused: 'ATTESTATION_REFUSED',
  /** No owner policy covers the workload (or class) asked about. */
  PolicyNotFound: 'POLICY_NOT_FOUND',
  /** A launch measurement matched no digest the owner accepts: no secret is released. */
  MeasurementRejected: 'MEASUREMENT_REJECTED',
  /** A policy change was refused: it contradicts itself or another class (details say how). */
  PolicyRejected: 'POLICY_REJECTED',
  /** A nonce is unknown, used already or expired (`details.reason` says which, `details.nonce` names it). */
  NonceRefused: 'NONCE_REFUSED',
  /** A migration key release was refused; `details.rule` names the failed rule, `details.decision` its log seq. */
  KeyReleaseRefused: 'KEY_RELEASE_REFUSED',
  /** A certificate for the cache does not decode or is not of the kind it claims (`details.reason`). */
  CertificateRejected: 'CERTIFICATE_REJECTED',
  /** A guest's overlay admission was refused; `details.rule` names the failed rule, `details.decision` its log seq. */
  GuestAdmissionRefused: 'GUEST_ADMISSION_REFUSED',
} as const;

/** AMD EPYC product lines, one spelling (lowercase) for SEV and SNP alike. */
export const PRODUCT_LINES = ['naples', 'rome', 'milan', 'genoa', 'turin'] as const;
export type ProductLine = (typeof PRODUCT_LINES)[number];

const hex = (bytes: number) =>
  z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `must be ${bytes} bytes of lowercase hex`);
const u8 = z.number().int().min(0).max(255);

/** A lab root the owner chooses to trust: a software secure processor's ARK, pinned by its signed body. */
export const LabRootSchema = z.object({
  name: IdSchema,
  generation: z.enum(PRODUCT_LINES),
  /** SHA-256 of the legacy-format ARK's signed body (header, exponent, modulus). */
  arkBodySha256: hex(32),
  /** SHA-256 of the lab's X.509 ARK (DER): the root of its SNP (VCEK) chains. */
  arkX509Sha256: hex(32).optional(),
});

/** SNP TCB components (SPL values) the platform must reach. */
export const TcbFloorSchema = z.object({ bootloader: u8, tee: u8, snp: u8, microcode: u8 });

/**
 * One workload class's owner policy: which platforms may run (and receive) its workloads and which
 * launches are genuine. A `production` policy trusts AMD's roots only; only a `lab` policy may name a
 * lab root, and then only the roots it names.
 */
export const OwnerPolicySchema = z
  .object({
    workloadClass: IdSchema,
    environment: z.enum(['production', 'lab']),
    /** The workloads (container or VM ids) of this class; a workload belongs to one class at most. */
    workloads: z.array(IdSchema).max(10_000),
    trustedRoots: z.object({
      /** AMD product lines whose (pinned) ARK is trusted. */
      amd: z.array(z.enum(PRODUCT_LINES)).max(PRODUCT_LINES.length),
      lab: z.array(LabRootSchema).max(16).default([]),
    }),
    sev: z.object({
      /** Lowest firmware API version accepted, as the platform's signed PEK certificate states it. */
      minFirmware: z.object({ apiMajor: u8, apiMinor: u8 }),
      /** The SEV/SEV-ES guest policy the owner launches its guests with (NOSEND forbids migration). */
      guestPolicy: z.number().int().min(0).max(0xffffffff),
      /** Accepted launch digests (GCTX.LD, SHA-256). */
      launchDigests: z.array(hex(32)).max(1000),
    }),
    snp: z
      .object({
        /** Accepted SNP launch digests (MEASUREMENT, SHA-384). */
        launchDigests: z.array(hex(48)).max(1000),
        /** Lowest reported TCB per product line; a line not listed has no floor. */
        minTcb: z.partialRecord(z.enum(PRODUCT_LINES), TcbFloorSchema).default({}),
        allowDebug: z.boolean().default(false),
        allowSmt: z.boolean().default(true),
      })
      .optional(),
    migration: z.object({
      allowed: z.boolean(),
      /** Hosts a workload of this class may move to. */
      targetHosts: z.array(IdSchema).max(10_000),
    }),
  })
  .superRefine((p, ctx) => {
    if (p.environment === 'production' && p.trustedRoots.lab.length > 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['trustedRoots', 'lab'],
        message: 'a production policy may not trust a lab root',
      });
    }
    if (p.trustedRoots.amd.length === 0 && p.trustedRoots.lab.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['trustedRoots'], message: 'trusts no root at all' });
    }
  });
export type OwnerPolicy = z.infer<typeof OwnerPolicySchema>;
export type OwnerPolicyInput = z.input<typeof OwnerPolicySchema>;

/** `put-policy`: a new version; `expectedVersion` is the version it replaces (0 for a new class). */
export const PutPolicyRequestSchema = z.object({
  policy: OwnerPolicySchema,
  expectedVersion: z.number().int().min(0),
});
export const PolicyVersionSchema = z.object({
  workloadClass: IdSchema,
  version: z.number().int().min(1),
  /** SHA-256 of the canonical policy document. */
  digest: hex(32),
  changedBy: z.string(),
  changedAt: z.iso.datetime({ offset: true }),
});
export type PolicyVersion = z.infer<typeof PolicyVersionSchema>;
export const PutPolicyReplySchema = PolicyVersionSchema;

export const GetPolicyRequestSchema = z.object({
  workloadClass: IdSchema,
  version: z.number().int().min(1).optional(),
});
export const GetPolicyReplySchema = PolicyVersionSchema.extend({ policy: OwnerPolicySchema });
export type GetPolicyReply = z.infer<typeof GetPolicyReplySchema>;

/** `list-policies`: the latest version of each class (no documents: `get-policy` reads one). */
export const ListPoliciesRequestSchema = z.object({});
export const ListPoliciesReplySchema = z.object({
  policies: z.array(PolicyVersionSchema.extend({ workloads: z.array(IdSchema) })),
});
export type ListPoliciesReply = z.infer<typeof ListPoliciesReplySchema>;

/**
 * The guest owner's policy verbs over HTTP: `POST /v1/policy/<verb>` on the key-broker, the body a
 * CCM envelope signed by the guest-owner key (the same identity as over NATS) whose `natssubject` is
 * this address, so a signature made for NATS or for another verb is refused here.
 */
export const POLICY_HTTP_VERBS = [
  KEY_BROKER_VERBS.putPolicy,
  KEY_BROKER_VERBS.getPolicy,
  KEY_BROKER_VERBS.listPolicies,
] as const;
export type PolicyHttpVerb = (typeof POLICY_HTTP_VERBS)[number];
export const policyHttpPath = (verb: PolicyHttpVerb): string => `/v1/policy/${verb}`;
/** What an HTTP policy envelope is addressed to (its signed `natssubject`). */
export const policyHttpAddress = (verb: PolicyHttpVerb): string => `http:key-broker${policyHttpPath(verb)}`;

/**
 * `put-certificate` (guest owner): a certificate the owner fetched from AMD's KDS (the broker has no
 * network). A VCEK (X.509 DER) is filed under its KDS URL, built from its own chip id and TCB; the
 * release then verifies an SNP guest's report with the cached VCEK of its chip and REPORTED_TCB instead
 * of the one the guest sent. A VLEK (from the cloud provider) likewise for a VLEK-signed report of its
 * product line and TCB. A CEK (SEV legacy format, 2084 bytes) is filed under its chip's GET_ID
 * value, which the certificate does not carry.
 */
const b64 = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');
export const PutCertificateRequestSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('vcek'), der: b64(8192) }),
  /** A VLEK (X.509 DER) the cloud provider's platforms sign reports with, filed under `kdsVlekUrl`. */
  z.object({ kind: z.literal('vlek'), der: b64(8192) }),
  z.object({ kind: z.literal('cek'), chipId: hex(64), certificate: b64(4096) }),
]);
export const CERTIFICATE_KINDS = ['vcek', 'vlek', 'cek'] as const;
export const CachedCertificateSchema = z.object({
  kind: z.enum(CERTIFICATE_KINDS),
  /** Where production fetches it from AMD's KDS: the cache key. */
  kdsUrl: z.string().max(500),
  /** SHA-256 of the certificate bytes. */
  sha256: hex(32),
  /** SNP product line of a VCEK or VLEK (lowercase). */
  productLine: z.enum(PRODUCT_LINES).optional(),
  /** A VLEK's cloud provider (its cspID extension). */
  cspId: z.string().max(500).optional(),
  addedBy: z.string(),
  addedAt: z.iso.datetime({ offset: true }),
});
export type CachedCertificate = z.infer<typeof CachedCertificateSchema>;
export const ListCertificatesRequestSchema = z.object({ kind: z.enum(CERTIFICATE_KINDS).optional() });
export const ListCertificatesReplySchema = z.object({ certificates: z.array(CachedCertificateSchema) });

/** `ccm.evt.policy.<workloadClass>.changed`: a new policy version (the document, no secrets in it). */
export const PolicyChangedEventSchema = GetPolicyReplySchema;

/** One rule of a decision: passed or failed, with why. */
export const RuleResultSchema = z.object({
  rule: z.string(),
  ok: z.boolean(),
  reason: z.string().optional(),
  detail: z.string().optional(),
});
export type RuleResult = z.infer<typeof RuleResultSchema>;

/**
 * A platform attestation verdict, as recorded and published on
 * `ccm.evt.attestation.<migrationId>.platform-verified|platform-refused`.
 */
export const PlatformVerdictSchema = z.object({
  attestationId: z.string(),
  migrationId: IdSchema,
  hostId: IdSchema,
  workloadId: IdSchema,
  workloadClass: IdSchema.optional(),
  policyVersion: z.number().int().optional(),
  ok: z.boolean(),
  platform: z.enum(['sev', 'sev-es', 'sev-snp']).optional(),
  generation: z.enum(PRODUCT_LINES).optional(),
  /** `amd` or `lab:<name>`. */
  root: z.string().optional(),
  /** SHA-256 of the PDH certificate the verdict covers (what a transport session must target). */
  pdhSha256: hex(32).optional(),
  rules: z.array(RuleResultSchema),
  /** The first failed rule. */
  failure: RuleResultSchema.optional(),
});
export type PlatformVerdict = z.infer<typeof PlatformVerdictSchema>;

const Base64 = z
  .string()
  .max(1 << 20)
  .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');

/** `launch-session`: an attested launch of `vmId` (a workload of an owner's class) on `hostId`. */
export const LaunchSessionRequestSchema = z.object({
  vmId: IdSchema,
  hostId: IdSchema,
  workloadId: IdSchema,
});
/** What the host-agent's `launch` takes as `sev` (policy, GODH certificate, session blob; public). */
export const LaunchSessionReplySchema = z.object({
  launchSessionId: IdSchema,
  policy: z.number().int().min(0).max(0xffffffff),
  godh: Base64,
  session: Base64,
  pdhSha256: hex(32),
});
export type LaunchSessionReply = z.infer<typeof LaunchSessionReplySchema>;

/** `launch-secret`: the LAUNCH_MEASURE blob the host returned, and the firmware version it names. */
export const LaunchSecretRequestSchema = z.object({
  launchSessionId: IdSchema,
  measurement: z.object({
    blob: Base64,
    platform: z.object({ apiMajor: u8, apiMinor: u8, build: u8 }),
  }),
});
/** A LAUNCH_SECRET packet for the host-agent's `inject-secret` (sealed: only that launch opens it). */
export const LaunchSecretReplySchema = z.object({
  launchSessionId: IdSchema,
  packetHeader: Base64,
  secret: Base64,
  /** The accepted launch digest the measurement matched. */
  launchDigest: hex(32),
});
export type LaunchSecretReply = z.infer<typeof LaunchSecretReplySchema>;

/**
 * Where a QEMU guest launched on the software secure processor (no SEV firmware) finds the secret table
 * of its attested launch: the host-agent, playing the firmware's LAUNCH_SECRET, writes the decrypted
 * page at this guest-physical address before the VM is resumed. 15 MiB: above the BIOS area, below the
 * 16 MiB where x86 kernels load (a PVH vmlinux is placed there, an initrd at the top of RAM), and
 * 1 MiB-aligned, so the kernel pads no RAM next to it. The container guest's kernel command line
 * reserves the page (`memmap=4K$0xf00000`; it is measured with the rest of the command line).
 */
export const LAUNCH_SECRET_PAGE = { gpa: 0xf00000, bytes: 4096 } as const;

/** GUIDs of the entries of the secret table a launch receives (EFI secret area). */
export const LAUNCH_SECRET_GUIDS = {
  /** The VM's identity secret: it MACs the broker's nonces to prove who it is (SEV/SEV-ES). */
  identity: 'a7c3b9e2-5d41-4f0e-9b6a-3c8e1d2f4a50',
  /** The VM's disk key. */
  disk: 'b8d4cae3-6e52-4a1f-8c7b-4d9f2e3a5b61',
  /**
   * The guest-agent's envelope signing key (Ed25519, PKCS#8 DER), when the key-broker holds the
   * guest-agent's service identity (`CCM_GUEST_AGENT_KEYS_DIR`): the guest takes it from here, not
   * from a disk the host can read.
   */
  guestAgentSigningKey: 'c9e5dbf4-7f63-4b20-9d8c-5e0a3f4b6c72',
  /** The guest-agent's NATS NKEY user seed (its ASCII `SU…` form), beside its signing key. */
  guestAgentNatsSeed: 'dafaec05-8074-4c31-ae9d-6f1b405c7d83',
} as const;
