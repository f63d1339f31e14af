import { generateKeyPairSync } from 'node:crypto';
import {
  chainIdFor,
  defaultGenesis,
  eventHash,
  migrationIdFor,
  type ChainLink,
  type Envelope,
  type SignerName,
} from '@ccm/contracts';
import { keyIdOf, TrustStore, type Identity } from '@ccm/keys';
import { sealEnvelope } from '../envelope-codec.js';
import { type StoredEvent } from './types.js';

/** A signing identity made in memory (no NATS seed), for audit tests and the benchmark. */
export function memoryIdentity(name: SignerName): Identity {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    name,
    natsSeed: new Uint8Array(),
    natsPublicKey: '',
    signingKey: privateKey,
    keyId: keyIdOf(publicKey),
  };
}

export function trustOf(ids: Identity[], scopes: Record<string, string> = {}): TrustStore {
  return new TrustStore(
    Object.fromEntries(ids.map((i) => [i.keyId, i.name])),
    Object.fromEntries(ids.flatMap((i) => (scopes[i.name] ? [[i.keyId, scopes[i.name]]] : []))),
  );
}

/**
 * Writes one migration's events the way CCM's publishers do (each publisher its own chain, the
 * coordinator's starting from the signed request and linking to the heads it saw), as stored events.
 */
export class ScriptedRecord {
  readonly stored: StoredEvent[] = [];
  readonly migrationId: string;
  private readonly heads = new Map<string, ChainLink>();
  private readonly request: Envelope;

  constructor(
    private readonly operator: Identity,
    key = `audit-${Math.random()}`,
  ) {
    this.migrationId = migrationIdFor(key);
    this.request = sealEnvelope(operator, {
      type: 'ccm.req.migrate',
      natssubject: 'ccm.req.migrate',
      idempotencykey: key,
      data: { workload: 'web-1', kind: 'container', sourceHost: 'host-a', targetHost: 'host-b' },
    });
  }

  /** Appends an event by `who` (publisher part `publisher`) on `subject`; `links` adds cross-links. */
  emit(
    who: Identity,
    subject: string,
    data: Record<string, unknown>,
    o: { publisher?: string; links?: boolean } = {},
  ): Envelope {
    const chainId = chainIdFor(this.migrationId, o.publisher ?? who.name);
    const head = this.heads.get(chainId);
    const isCoordinator = who.name === 'saga-coordinator';
    const genesis = isCoordinator ? eventHash(this.request) : defaultGenesis(chainId);
    const links = o.links ? Object.fromEntries([...this.heads].filter(([id]) => id !== chainId)) : undefined;
    const at = new Date(Date.UTC(2026, 0, 1, 0, 0, this.stored.length)).toISOString();
    const env = sealEnvelope(who, {
      type: subject.split('.').slice(0, 3).concat(subject.split('.').slice(4)).join('.'),
      natssubject: subject,
      correlationid: this.migrationId,
      data: {
        migrationId: this.migrationId,
        at,
        ...(subject.endsWith('.requested') && isCoordinator ? { request: this.request } : {}),
        ...data,
      },
      chain: { chainid: chainId, chainseq: (head?.seq ?? 0) + 1, chainprev: head?.hash ?? genesis },
      ...(links ? { chainLinks: links } : {}),
    });
    this.heads.set(chainId, { seq: env.chainseq!, hash: eventHash(env) });
    this.stored.push({ streamSeq: this.stored.length + 1, subject, data: JSON.stringify(env) });
    return env;
  }
}
