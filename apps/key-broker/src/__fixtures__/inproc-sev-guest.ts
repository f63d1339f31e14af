import { randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  EvidenceRequestSchema,
  guestEvidenceMac,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  NonceReplySchema,
  type SevEvidence,
} from '@ccm/contracts';
import { MessageBus } from '@ccm/messaging';
import { type ServiceDefinition } from '@ccm/runtime';
import { generateIdentityKey, type IdentityKey } from '@ccm/sealing';
import { InprocKeyHolder } from './inproc-guest.js';
import { type z } from 'zod';

/** How the in-process SEV guest answers `evidence`: honestly, or breaking one thing. */
export type SevGuestMode =
  | 'honest'
  /** Its last honest evidence again (that nonce is spent). */
  | 'replay'
  /** A MAC over a nonce it asked the broker for itself, then let expire (`expire` ages it). */
  | 'stale'
  /** A MAC over a nonce it asked for another migration, binding that migration. */
  | 'other-migration'
  /** A MAC under a secret it made up (it never had the launch's identity secret). */
  | 'wrong-mac';

export interface SevGuestBehaviour {
  readonly vmId: string;
  readonly platform: 'sev' | 'sev-es';
  readonly identity: IdentityKey;
  /** The identity secret its attested launch injected (read from its secret table). */
  identitySecret: Buffer;
  mode: SevGuestMode;
  /** Makes a nonce expired now (the test reaches into the broker's table: time passing, no sleep). */
  expire?: (nonce: string) => Promise<void>;
  lastHonest?: SevEvidence;
  /** Migration keys it unsealed. */
  readonly keys: Map<string, Buffer>;
  readonly secrets: Map<string, Buffer>;
}

const BEHAVIOUR = Symbol('sev-guest-behaviour');

@Injectable()
class InprocSevGuest extends InprocKeyHolder {
  constructor(
    @Inject(BEHAVIOUR) readonly b: SevGuestBehaviour,
    private readonly bus: MessageBus,
  ) {
    super();
  }

  protected async answer(req: z.infer<typeof EvidenceRequestSchema>): Promise<SevEvidence> {
    const b = this.b;
    const mac = (secret: Buffer, nonce: string, migrationId: string): SevEvidence => ({
      vmId: b.vmId,
      nonce,
      migrationId,
      platform: b.platform,
      publicKey: b.identity.publicKey.toString('base64'),
      mac: guestEvidenceMac(secret, b.identity.publicKey, Buffer.from(nonce, 'hex'), migrationId).toString(
        'hex',
      ),
    });
    switch (b.mode) {
      case 'honest':
        return (b.lastHonest = mac(b.identitySecret, req.nonce, req.migrationId));
      case 'replay':
        if (!b.lastHonest) throw new Error('nothing to replay yet');
        return b.lastHonest;
      case 'stale': {
        const { nonce } = await this.bus.request(
          keyBrokerSubject(KEY_BROKER_VERBS.nonce),
          { migrationId: req.migrationId },
          NonceReplySchema,
        );
        await b.expire!(nonce);
        return mac(b.identitySecret, nonce, req.migrationId);
      }
      case 'other-migration': {
        const other = `${req.migrationId}-other`;
        const { nonce } = await this.bus.request(
          keyBrokerSubject(KEY_BROKER_VERBS.nonce),
          { migrationId: other },
          NonceReplySchema,
        );
        return mac(b.identitySecret, nonce, other);
      }
      case 'wrong-mac':
        return mac(randomBytes(32), req.nonce, req.migrationId);
    }
  }
}

/** An SEV/SEV-ES guest-agent in this process (its own NATS identity) the test steers. */
export function inprocSevGuest(
  vmId: string,
  platform: 'sev' | 'sev-es',
  identitySecret: Buffer,
): { definition: ServiceDefinition; behaviour: SevGuestBehaviour } {
  const behaviour: SevGuestBehaviour = {
    vmId,
    platform,
    identity: generateIdentityKey(),
    identitySecret,
    mode: 'honest',
    keys: new Map(),
    secrets: new Map(),
  };
  return {
    behaviour,
    definition: {
      service: 'guest-agent',
      database: false,
      scopeId: () => vmId,
      providers: [{ provide: BEHAVIOUR, useValue: behaviour }, InprocSevGuest],
    },
  };
}
