import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import { KeyUnsealError } from './errors.js';
import { KEY_BYTES } from './format.js';

/**
 * The migration key sealed to one guest's identity key (ARCHITECTURE §9 step 5), format version 1.
 * The key-broker seals; only the guest holding the identity private key opens. Nothing here is secret
 * on the wire: a subscriber on `>` sees an ephemeral public key and ciphertext.
 *
 * ```
 * offset size field
 *      0    4 magic "CCMK"
 *      4    1 version (1)
 *      5    3 reserved, zero
 *      8   32 ephemeral X25519 public key (the sealer's, fresh per seal)
 *     40   12 AES-256-GCM nonce (random)
 *     52   32 ciphertext of the 32-byte migration key
 *     84   16 GCM tag
 * ```
 *
 * KEK = HKDF-SHA256(ikm = X25519(ephemeral, identity), salt = ephemeral pub ‖ identity pub,
 * info = "ccm-migration-key-v1" 0x00 migrationId 0x00 keyId). AAD = bytes 0..52 ‖ identity pub ‖
 * migrationId 0x00 keyId: a sealed key moved to another guest, migration or key id does not open.
 */
export const SEALED_KEY_MAGIC = Buffer.from('CCMK', 'ascii');
export const SEALED_KEY_VERSION = 1;
export const SEALED_KEY_BYTES = 100;
export const IDENTITY_PUBLIC_KEY_BYTES = 32;
const HEAD = 52;
const INFO = 'ccm-migration-key-v1';
/** DER prefix of an X25519 SubjectPublicKeyInfo; the raw 32-byte key follows it. */
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/** What a sealed key is bound to besides the recipient. */
export interface KeySealBinding {
  readonly migrationId: string;
  /** The key-broker's id of this key (the `keyId` of `release-migration-key`). */
  readonly keyId: string;
}

/** A guest's identity key pair: X25519; the public half is what attestation binds (REPORT_DATA / MAC). */
export interface IdentityKey {
  readonly privateKey: KeyObject;
  /** Raw 32-byte X25519 public key. */
  readonly publicKey: Buffer;
}

export function generateIdentityKey(): IdentityKey {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey, publicKey: rawPublic(publicKey) };
}

/** The identity key from its PKCS#8 PEM (as a guest keeps it on its encrypted disk). */
export function identityKeyFromPem(pem: string): IdentityKey {
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'x25519') throw new KeyUnsealError('the identity key is not X25519');
  return { privateKey, publicKey: rawPublic(createPublicKey(privateKey)) };
}

export function identityKeyToPem(k: IdentityKey): string {
  return k.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
}

function rawPublic(k: KeyObject): Buffer {
  return Buffer.from(k.export({ format: 'der', type: 'spki' }).subarray(X25519_SPKI_PREFIX.length));
}

function publicFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== IDENTITY_PUBLIC_KEY_BYTES) throw new RangeError('an X25519 public key is 32 bytes');
  return createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

function kek(shared: Buffer, eph: Buffer, recipient: Buffer, b: KeySealBinding): Buffer {
  const info = Buffer.from(`${INFO}\0${b.migrationId}\0${b.keyId}`, 'utf8');
  return Buffer.from(hkdfSync('sha256', shared, Buffer.concat([eph, recipient]), info, KEY_BYTES));
}

const aad = (head: Buffer, recipient: Buffer, b: KeySealBinding): Buffer =>
  Buffer.concat([head, recipient, Buffer.from(`${b.migrationId}\0${b.keyId}`, 'utf8')]);

/** Seals `migrationKey` (32 bytes) to the guest whose identity public key is `recipient`. */
export function sealMigrationKey(migrationKey: Uint8Array, recipient: Uint8Array, b: KeySealBinding): Buffer {
  if (migrationKey.length !== KEY_BYTES) throw new RangeError(`the migration key must be ${KEY_BYTES} bytes`);
  const recipientRaw = Buffer.from(recipient);
  const eph = generateKeyPairSync('x25519');
  const ephRaw = rawPublic(eph.publicKey);
  const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: publicFromRaw(recipientRaw) });
  const head = Buffer.alloc(HEAD);
  SEALED_KEY_MAGIC.copy(head, 0);
  head.writeUInt8(SEALED_KEY_VERSION, 4);
  ephRaw.copy(head, 8);
  randomBytes(12).copy(head, 40);
  const cipher = createCipheriv('aes-256-gcm', kek(shared, ephRaw, recipientRaw, b), head.subarray(40, 52));
  cipher.setAAD(aad(head, recipientRaw, b));
  const ct = Buffer.concat([cipher.update(migrationKey), cipher.final()]);
  return Buffer.concat([head, ct, cipher.getAuthTag()]);
}

/** Opens a sealed migration key with this guest's identity key; {@link KeyUnsealError} says why not. */
export function unsealMigrationKey(sealed: Uint8Array, identity: IdentityKey, b: KeySealBinding): Buffer {
  const s = Buffer.from(sealed);
  if (s.length !== SEALED_KEY_BYTES)
    throw new KeyUnsealError(`${s.length} bytes, expected ${SEALED_KEY_BYTES}`);
  if (!s.subarray(0, 4).equals(SEALED_KEY_MAGIC)) throw new KeyUnsealError('bad magic');
  if (s.readUInt8(4) !== SEALED_KEY_VERSION) throw new KeyUnsealError(`version ${s.readUInt8(4)}`);
  if (s[5] !== 0 || s[6] !== 0 || s[7] !== 0) throw new KeyUnsealError('reserved bytes set');
  const ephRaw = s.subarray(8, 40);
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey: identity.privateKey, publicKey: publicFromRaw(ephRaw) });
  } catch (cause) {
    throw new KeyUnsealError('bad ephemeral key', { cause });
  }
  const decipher = createDecipheriv(
    'aes-256-gcm',
    kek(shared, ephRaw, identity.publicKey, b),
    s.subarray(40, 52),
  );
  decipher.setAAD(aad(s.subarray(0, HEAD), identity.publicKey, b));
  decipher.setAuthTag(s.subarray(84, 100));
  try {
    return Buffer.concat([decipher.update(s.subarray(52, 84)), decipher.final()]);
  } catch (cause) {
    throw new KeyUnsealError(
      'not sealed to this identity, or altered, or bound to another migration or key id',
      {
        cause,
      },
    );
  }
}
