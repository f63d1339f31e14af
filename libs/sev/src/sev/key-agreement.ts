import { diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { sevAlgorithmKind } from './algorithms.js';
import { SevAlgorithm, SevCurve, SevUsage } from './constants.js';
import { SevInvalidCertificateError, SevInvalidParamError } from './errors.js';
import { SEV_TRANSPORT_KEY_SIZE } from './kdf.js';
import { sevPublicKeyFromKeyObject, sevPublicKeyToKeyObject } from './public-key.js';
import { createSevCertificate, requireSevUsage, type SevCertificate } from './sev-cert.js';
import {
  SevSessionFieldSize,
  unwrapSevTransportKeys,
  wrapSevTransportKeys,
  type SevSessionBlob,
  type SevTransportKeys,
} from './session.js';
import { defaultSevRandom, type SevRandomSource } from './transport-crypto.js';

/** A P-384 Diffie-Hellman key pair (a guest owner's GODH, or a PDH held by an emulated firmware). */
export interface SevDhKeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** Fresh ephemeral P-384 key pair for ECDH. */
export function generateSevDhKeyPair(): SevDhKeyPair {
  return generateKeyPairSync('ec', { namedCurve: 'P-384' });
}

/**
 * The guest owner's GODH certificate: usage PDH, ECDH-SHA256, P-384, API 0.0, both signature slots
 * empty (firmware uses only the public key). QEMU takes it base64-encoded as `dh-cert-file`.
 */
export function createGodhCertificate(publicKey: KeyObject): SevCertificate {
  const key = sevPublicKeyFromKeyObject(publicKey);
  if (key.kind !== 'ec' || key.curve !== SevCurve.P384)
    throw new SevInvalidParamError('publicKey', 'must be P-384');
  return createSevCertificate({ usage: SevUsage.PDH, algorithm: SevAlgorithm.ECDH_SHA256, publicKey: key });
}

/**
 * Z for the session: ECDH between our P-384 private key and the peer's DH certificate (the platform's PDH
 * for a launch or SEND_START; a GODH or the source PDH on the firmware side). Z is the 48-byte big-endian
 * X coordinate of the shared point.
 */
export function sevEcdhSharedSecret(privateKey: KeyObject, peer: SevCertificate): Buffer {
  requireSevUsage(peer, SevUsage.PDH, 'DH peer certificate');
  if (sevAlgorithmKind(peer.algorithm) !== 'ecdh' || peer.publicKey.kind !== 'ec') {
    throw new SevInvalidCertificateError('DH peer certificate', 'PUB_KEY_ALGO is not ECDH');
  }
  if (peer.publicKey.curve !== SevCurve.P384)
    throw new SevInvalidCertificateError('DH peer certificate', 'not P-384');
  return diffieHellman({ privateKey, publicKey: sevPublicKeyToKeyObject(peer.publicKey) });
}

/** Inputs of `createSevTransportSession`. */
export interface CreateSevTransportSessionInput {
  /** Our DH private key: the GODH (launch) or the source platform's PDH (SEND_START). */
  readonly privateKey: KeyObject;
  /** The other end's PDH certificate (already chain-verified by the caller). */
  readonly peer: SevCertificate;
  readonly policy: number;
  /** TEK/TIK to wrap; fresh random keys when omitted. */
  readonly keys?: SevTransportKeys;
  readonly random?: SevRandomSource;
}

/**
 * Picks NONCE, WRAP_IV (and TEK/TIK unless given), agrees Z with the peer and wraps the keys: the session
 * blob of LAUNCH_START (guest owner) or SEND_START (source firmware).
 */
export function createSevTransportSession(input: CreateSevTransportSessionInput): {
  readonly session: SevSessionBlob;
  readonly keys: SevTransportKeys;
} {
  const random = input.random ?? defaultSevRandom;
  const keys = input.keys ?? { tek: random(SEV_TRANSPORT_KEY_SIZE), tik: random(SEV_TRANSPORT_KEY_SIZE) };
  const session = wrapSevTransportKeys({
    sharedSecret: sevEcdhSharedSecret(input.privateKey, input.peer),
    nonce: random(SevSessionFieldSize.NONCE),
    wrapIv: random(SevSessionFieldSize.WRAP_IV),
    keys,
    policy: input.policy,
  });
  return { session, keys };
}

/**
 * The receiving firmware's side: agree Z with the sender's DH certificate (GODH at LAUNCH_START, source
 * PDH at RECEIVE_START), check both MACs and return TEK/TIK.
 */
export function openSevTransportSession(input: {
  readonly privateKey: KeyObject;
  readonly peer: SevCertificate;
  readonly session: SevSessionBlob;
  readonly policy: number;
}): SevTransportKeys {
  return unwrapSevTransportKeys({
    sharedSecret: sevEcdhSharedSecret(input.privateKey, input.peer),
    session: input.session,
    policy: input.policy,
  });
}
