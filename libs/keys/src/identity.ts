import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BOOTSTRAP,
  CcmError,
  ErrorCodes,
  natsPermissionsFor,
  type DurableConsumerContract,
  type IdentityName,
  type ServiceName,
} from '@ccm/contracts';
import { createUser, fromSeed } from '@nats-io/nkeys';

/**
 * One identity's keys. The NATS NKEY (for connecting) and the Ed25519 envelope signing key are
 * distinct on purpose: NATS is operator-run and untrusted, and an NKEY signs nonces the server picks,
 * so it must never be the key that makes messages authentic.
 */
export interface Identity {
  name: IdentityName;
  natsSeed: Uint8Array;
  natsPublicKey: string;
  signingKey: KeyObject;
  /** base64url of the raw 32-byte Ed25519 public key; names the key in `signerkey`. */
  keyId: string;
}

/** A trusted signing key: whose it is and, for a pinned host-agent, which host it speaks for. */
export interface TrustedKey {
  signer: string;
  scope?: string;
  key: KeyObject;
}

/** keyId → signer name, from `trust.json`. Receivers accept a signature only from keys listed here. */
export class TrustStore {
  private readonly keys = new Map<string, TrustedKey>();
  constructor(entries: Record<string, string>, scopes: Record<string, string> = {}) {
    for (const [keyId, signer] of Object.entries(entries)) {
      const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: keyId }, format: 'jwk' });
      this.keys.set(keyId, { signer, key, ...(scopes[keyId] ? { scope: scopes[keyId] } : {}) });
    }
  }
  lookup(keyId: string): TrustedKey | undefined {
    return this.keys.get(keyId);
  }
  get size(): number {
    return this.keys.size;
  }
}

export function keyIdOf(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new TypeError('not an Ed25519 public key');
  return jwk.x;
}

/** File name suffixes of an identity's two secrets: its NKEY seed and its Ed25519 signing key. */
export const NATS_SEED_SUFFIX = '.nk';
export const SIGNING_KEY_SUFFIX = '.sign.pem';
const natsSeedFile = (dir: string, name: string) => join(dir, `${name}${NATS_SEED_SUFFIX}`);
const signingKeyFile = (dir: string, name: string) => join(dir, `${name}${SIGNING_KEY_SUFFIX}`);
/** The public trust store: keyId → signer (and host scope). */
export const TRUST_FILE = 'trust.json';
/** The nats-server include file with one NKEY user per identity and its permissions. */
export const NATS_AUTH_FILE = 'nats-auth.conf';

/** File stem of an identity: `host-agent@host-a` for a host-agent pinned to its host, else the name. */
const stem = (name: string, scope?: string) => (scope ? `${name}@${scope}` : name);

/**
 * Loads one identity from a keys dir made by {@link generateKeys}. With a scope (a host-agent's host
 * id) it prefers the identity pinned to that scope and falls back to the unpinned one.
 */
export async function loadIdentity(dir: string, name: IdentityName, scope?: string): Promise<Identity> {
  const file = scope && existsSync(natsSeedFile(dir, stem(name, scope))) ? stem(name, scope) : name;
  try {
    const natsSeed = new TextEncoder().encode((await readFile(natsSeedFile(dir, file), 'utf8')).trim());
    const signingKey = createPrivateKey(await readFile(signingKeyFile(dir, file), 'utf8'));
    return {
      name,
      natsSeed,
      natsPublicKey: fromSeed(natsSeed).getPublicKey(),
      signingKey,
      keyId: keyIdOf(createPublicKey(signingKey)),
    };
  } catch (cause) {
    throw new CcmError(
      ErrorCodes.Unavailable,
      `cannot load the keys of ${name} from ${dir}: ${(cause as Error).message}`,
      {
        retryable: false,
        cause,
      },
    );
  }
}

export async function loadTrustStore(dir: string): Promise<TrustStore> {
  const raw = JSON.parse(await readFile(join(dir, TRUST_FILE), 'utf8')) as {
    signers?: Record<string, string>;
    scopes?: Record<string, string>;
  };
  return new TrustStore(raw.signers ?? {}, raw.scopes ?? {});
}

export interface GenerateKeysOptions {
  /** Identities to make; the stream bootstrap gets a NATS user but no place in `trust.json`. */
  signers: readonly IdentityName[];
  /** Pins the unpinned host-agent identity to one host's command subjects when set. */
  hostId?: string;
  /** Also make one host-agent identity per host (`host-agent@<id>`), each pinned to its host. */
  hostIds?: readonly string[];
  /** Durable consumers granted beyond those declared in libs/contracts (test probes). */
  extraConsumers?: Partial<Record<ServiceName, readonly DurableConsumerContract[]>>;
}

/**
 * Creates (or completes) a keys dir: an NKEY seed and an Ed25519 signing key per identity, kept if
 * already present; rewrites `trust.json` and `nats-auth.conf` from what is there. Secret files are 0600.
 */
export async function generateKeys(
  dir: string,
  opts: GenerateKeysOptions,
): Promise<{ trust: Record<string, string>; natsAuthFile: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const trust: Record<string, string> = {};
  const scopes: Record<string, string> = {};
  const users: string[] = [];
  const entries: Array<{ name: IdentityName; scope?: string }> = [
    ...opts.signers.map((name) => ({ name })),
    ...(opts.hostIds ?? []).map((scope) => ({ name: 'host-agent' as const, scope })),
  ];
  for (const { name, scope } of entries) {
    const file = stem(name, scope);
    if (!existsSync(natsSeedFile(dir, file))) {
      const kp = createUser();
      await writeFile(natsSeedFile(dir, file), `${new TextDecoder().decode(kp.getSeed())}\n`, {
        mode: 0o600,
      });
    }
    if (!existsSync(signingKeyFile(dir, file))) {
      const { privateKey } = generateKeyPairSync('ed25519');
      await writeFile(signingKeyFile(dir, file), privateKey.export({ format: 'pem', type: 'pkcs8' }), {
        mode: 0o600,
      });
    }
    await chmod(natsSeedFile(dir, file), 0o600);
    await chmod(signingKeyFile(dir, file), 0o600);
    const id = await loadIdentity(dir, name, scope);
    if (name !== BOOTSTRAP) trust[id.keyId] = name;
    if (scope) scopes[id.keyId] = scope;
    const perms = natsPermissionsFor(
      name,
      name === 'host-agent' ? { hostId: scope ?? opts.hostId } : {},
      name === BOOTSTRAP || name === 'operator' || name === 'guest-owner'
        ? []
        : (opts.extraConsumers?.[name] ?? []),
    );
    users.push(
      `    { nkey: "${id.natsPublicKey}", permissions: { publish: { allow: ${JSON.stringify(perms.publish)} }, subscribe: { allow: ${JSON.stringify(perms.subscribe)} }, allow_responses: true } } # ${file}`,
    );
  }
  await writeFile(
    join(dir, TRUST_FILE),
    `${JSON.stringify({ version: 1, signers: trust, scopes }, null, 2)}\n`,
  );
  const natsAuthFile = join(dir, NATS_AUTH_FILE);
  await writeFile(
    natsAuthFile,
    `# generated by ccm-keys: one NKEY user per CCM identity\nauthorization {\n  users: [\n${users.join('\n')}\n  ]\n}\n`,
  );
  return { trust, natsAuthFile };
}
