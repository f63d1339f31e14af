import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { wgKey } from './validate.js';

/** A WireGuard key pair (Curve25519), base64 as `wg` prints it. */
export interface WgKeyPair {
  readonly privateKey: string;
  readonly publicKey: string;
}

const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** A fresh key pair, as `wg genkey | wg pubkey` would make (no process spawned). */
export function generateKeyPair(): WgKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const priv = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
  const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  return { privateKey: priv.toString('base64'), publicKey: pub.toString('base64') };
}

/** The public key of a base64 private key (`wg pubkey`). */
export function publicKeyOf(privateKey: string): string {
  const raw = Buffer.from(wgKey(privateKey), 'base64');
  const key = createPrivateKey({
    key: Buffer.concat([X25519_PKCS8_PREFIX, raw]),
    format: 'der',
    type: 'pkcs8',
  });
  return createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64');
}
