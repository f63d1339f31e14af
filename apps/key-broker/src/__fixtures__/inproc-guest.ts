import { createHash, type KeyObject } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  DropKeySchema,
  EvidenceRequestSchema,
  GUEST_VERBS,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  LoadKeySchema,
  LoadSecretSchema,
  NonceReplySchema,
  subjects,
  type EvidenceReply,
  type SnpEvidence,
} from '@ccm/contracts';
import { MessageBus, OnRequest } from '@ccm/messaging';
import { type ServiceDefinition } from '@ccm/runtime';
import { generateIdentityKey, unsealMigrationKey, type IdentityKey } from '@ccm/sealing';
import { encodeAttestationReport, parseAttestationReport, signAttestationReport } from '@ccm/sev';
import { simGuestEvidence, type SevGuest, type SoftwareSecureProcessor } from '@ccm/sev-emulator';
import { type z } from 'zod';

/**
 * How the in-process guest answers `evidence`: honestly, or as a compromised guest-agent (or the host
 * under it) trying to pass evidence that must be refused.
 */
export type GuestMode =
  | 'honest'
  /** The evidence of its last honest answer again (its nonce is spent). */
  | 'replay'
  /** Over a nonce it asked the broker for itself, then let expire (`expire` ages it). */
  | 'stale'
  /** Over a nonce it asked for another migration, binding that migration. */
  | 'other-migration'
  /** An honest report with one bit of MEASUREMENT flipped. */
  | 'bit-flip'
  /** An honest report presented with another platform's VCEK chain. */
  | 'foreign-chain'
  /**
   * As a platform that signs with its cloud provider's VLEK would answer: the honest report with
   * KEY_INFO signing key VLEK and CHIP_ID zero, signed with `vlek.key`, and the chain ARK → ASVK → VLEK.
   */
  | 'vlek';

/** The state of an in-process guest the test steers and reads (it holds its own identity key). */
export interface GuestBehaviour {
  readonly vmId: string;
  readonly sp: SoftwareSecureProcessor;
  readonly guest: SevGuest;
  readonly identity: IdentityKey;
  mode: GuestMode;
  /** Makes a nonce expired now (the test reaches into the broker's table: time passing, no sleep). */
  expire(nonce: string): Promise<void>;
  /** Another platform's chain, for `foreign-chain`. */
  foreignChain?: SnpEvidence['vcekChain'];
  /** The VLEK private key and its chain, for `vlek`. */
  vlek?: { key: KeyObject; chain: SnpEvidence['vcekChain'] };
  lastHonest?: SnpEvidence;
  /** Migration keys it unsealed (the test's proof of what a guest holds). */
  readonly keys: Map<string, Buffer>;
  /** Workload secrets it was issued (`load-secret`), by workload. */
  readonly secrets: Map<string, Buffer>;
}

const BEHAVIOUR = Symbol('guest-behaviour');

/** What a guest in this process holds: its identity key and the migration keys it unsealed. */
export interface KeyHolding {
  readonly vmId: string;
  readonly identity: IdentityKey;
  readonly keys: Map<string, Buffer>;
  readonly secrets: Map<string, Buffer>;
}

/**
 * A guest-agent in this process: `evidence` (answered by the subclass), `load-key` and `drop-key` (the
 * key-broker alone may send them).
 */
export abstract class InprocKeyHolder {
  abstract readonly b: KeyHolding;

  /** The evidence this guest gives for the broker's request (honest or not). */
  protected abstract answer(req: z.infer<typeof EvidenceRequestSchema>): Promise<EvidenceReply>;

  @OnRequest({
    subject: (self) => subjects.guestCmd((self as InprocKeyHolder).b.vmId, GUEST_VERBS.evidence),
    schema: EvidenceRequestSchema,
    allow: ['key-broker'],
  })
  evidence(req: z.infer<typeof EvidenceRequestSchema>): Promise<EvidenceReply> {
    return this.answer(req);
  }

  @OnRequest({
    subject: (self) => subjects.guestCmd((self as InprocKeyHolder).b.vmId, GUEST_VERBS.loadKey),
    schema: LoadKeySchema,
    allow: ['key-broker'],
  })
  loadKey(req: z.infer<typeof LoadKeySchema>): Promise<{ keyId: string }> {
    const key = unsealMigrationKey(Buffer.from(req.sealedKey, 'base64'), this.b.identity, req);
    this.b.keys.set(req.migrationId, key);
    return Promise.resolve({ keyId: req.keyId });
  }

  @OnRequest({
    subject: (self) => subjects.guestCmd((self as InprocKeyHolder).b.vmId, GUEST_VERBS.loadSecret),
    schema: LoadSecretSchema,
    allow: ['key-broker'],
  })
  loadSecret(
    req: z.infer<typeof LoadSecretSchema>,
  ): Promise<{ secretId: string; generation: number; sha256: string }> {
    const secret = unsealMigrationKey(Buffer.from(req.sealed, 'base64'), this.b.identity, {
      migrationId: req.migrationId,
      keyId: req.secretId,
    });
    this.b.secrets.set(req.workloadId, secret);
    const { secretId, generation } = req;
    return Promise.resolve({
      secretId,
      generation,
      sha256: createHash('sha256').update(secret).digest('hex'),
    });
  }

  @OnRequest({
    subject: (self) => subjects.guestCmd((self as InprocKeyHolder).b.vmId, GUEST_VERBS.dropKey),
    schema: DropKeySchema,
    allow: ['key-broker'],
  })
  dropKey(req: z.infer<typeof DropKeySchema>): Promise<{ dropped: boolean }> {
    return Promise.resolve({ dropped: this.b.keys.delete(req.migrationId) });
  }
}

@Injectable()
class InprocGuest extends InprocKeyHolder {
  constructor(
    @Inject(BEHAVIOUR) readonly b: GuestBehaviour,
    private readonly bus: MessageBus,
  ) {
    super();
  }

  protected async answer(req: z.infer<typeof EvidenceRequestSchema>): Promise<SnpEvidence> {
    const b = this.b;
    const honest = (nonce: string, migrationId: string) =>
      simGuestEvidence(b.sp, b.guest, b.vmId, b.identity.publicKey, { nonce, migrationId });
    const own = (migrationId: string) =>
      this.bus.request(keyBrokerSubject(KEY_BROKER_VERBS.nonce), { migrationId }, NonceReplySchema);
    switch (b.mode) {
      case 'honest':
        return (b.lastHonest = honest(req.nonce, req.migrationId));
      case 'replay':
        if (!b.lastHonest) throw new Error('nothing to replay yet');
        return b.lastHonest;
      case 'stale': {
        const { nonce } = await own(req.migrationId);
        await b.expire(nonce);
        return honest(nonce, req.migrationId);
      }
      case 'other-migration': {
        const other = `${req.migrationId}-other`;
        const { nonce } = await own(other);
        return honest(nonce, other);
      }
      case 'bit-flip': {
        const e = honest(req.nonce, req.migrationId);
        const report = Buffer.from(e.report, 'base64');
        report[0x90] = report[0x90] ^ 0x01; // MEASUREMENT
        return { ...e, report: report.toString('base64') };
      }
      case 'foreign-chain':
        return { ...honest(req.nonce, req.migrationId), vcekChain: b.foreignChain! };
      case 'vlek': {
        const { vcekUrl: _url, ...e } = honest(req.nonce, req.migrationId);
        const r = parseAttestationReport(Buffer.from(e.report, 'base64'));
        const resigned = encodeAttestationReport({
          ...r,
          keyInfo: { ...r.keyInfo, signingKey: 'VLEK' },
          chipId: new Uint8Array(64),
        });
        const report = Buffer.from(signAttestationReport(resigned, b.vlek!.key)).toString('base64');
        return { ...e, report, vcekChain: b.vlek!.chain };
      }
    }
  }
}

/** A guest-agent in this process (its own NATS identity, a real simulated SNP guest) the test steers. */
export function inprocGuest(
  vmId: string,
  sp: SoftwareSecureProcessor,
  guest: SevGuest,
  expire: (nonce: string) => Promise<void>,
): { definition: ServiceDefinition; behaviour: GuestBehaviour } {
  const behaviour: GuestBehaviour = {
    vmId,
    sp,
    guest,
    identity: generateIdentityKey(),
    mode: 'honest',
    expire,
    keys: new Map(),
    secrets: new Map(),
  };
  return {
    behaviour,
    definition: {
      service: 'guest-agent',
      database: false,
      scopeId: () => vmId,
      providers: [{ provide: BEHAVIOUR, useValue: behaviour }, InprocGuest],
    },
  };
}
