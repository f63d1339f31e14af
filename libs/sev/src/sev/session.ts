import { fixedParam, requireExactLength, u32le } from './bytes.js';
import { SevBadMacError } from './errors.js';
import { deriveSevSessionKeys, SEV_TRANSPORT_KEY_SIZE } from './kdf.js';
import { sevAes128Ctr, sevHmacSha256, sevMacEqual } from './transport-crypto.js';

/** Size of the session blob given to LAUNCH_START, SEND_START and RECEIVE_START. */
export const SEV_SESSION_SIZE = 128;
/** Field offsets inside the session blob. */
export const SevSessionOffset = {
  NONCE: 0x00,
  WRAP_TK: 0x10,
  WRAP_IV: 0x30,
  WRAP_MAC: 0x40,
  POLICY_MAC: 0x60,
} as const;
/** Field sizes inside the session blob. */
export const SevSessionFieldSize = {
  NONCE: 16,
  WRAP_TK: 32,
  WRAP_IV: 16,
  WRAP_MAC: 32,
  POLICY_MAC: 32,
} as const;

/** The decoded 128-byte session blob. */
export interface SevSessionBlob {
  /** Context of the MASTER_SECRET derivation. */
  readonly nonce: Uint8Array;
  /** AES-128-CTR(KEK, WRAP_IV, TEK ‖ TIK). */
  readonly wrapTk: Uint8Array;
  readonly wrapIv: Uint8Array;
  /** HMAC-SHA256(KIK, WRAP_TK). */
  readonly wrapMac: Uint8Array;
  /** HMAC-SHA256(TIK, LE32(POLICY)). */
  readonly policyMac: Uint8Array;
}

/** The two transport keys: TEK encrypts packets (AES-128), TIK authenticates them (HMAC-SHA256). */
export interface SevTransportKeys {
  readonly tek: Uint8Array;
  readonly tik: Uint8Array;
}

const FIELDS = Object.keys(SevSessionOffset) as (keyof typeof SevSessionOffset)[];
const PROP = {
  NONCE: 'nonce',
  WRAP_TK: 'wrapTk',
  WRAP_IV: 'wrapIv',
  WRAP_MAC: 'wrapMac',
  POLICY_MAC: 'policyMac',
} as const;

/** Decodes exactly 128 bytes. */
export function decodeSevSession(bytes: Uint8Array): SevSessionBlob {
  requireExactLength(bytes, SEV_SESSION_SIZE, 'session blob');
  const out: Record<string, Uint8Array> = {};
  for (const f of FIELDS) {
    out[PROP[f]] = Uint8Array.from(
      bytes.subarray(SevSessionOffset[f], SevSessionOffset[f] + SevSessionFieldSize[f]),
    );
  }
  return out as unknown as SevSessionBlob;
}

/** Encodes the 128-byte blob (field lengths are checked). */
export function encodeSevSession(session: SevSessionBlob): Buffer {
  const out = Buffer.alloc(SEV_SESSION_SIZE);
  for (const f of FIELDS)
    out.set(fixedParam(session[PROP[f]], SevSessionFieldSize[f], PROP[f]), SevSessionOffset[f]);
  return out;
}

/** POLICY_MAC = HMAC-SHA256(TIK, LE32(policy)). */
export function computeSevPolicyMac(tik: Uint8Array, policy: number): Buffer {
  return sevHmacSha256(tik, u32le(policy));
}

/** Inputs of the deterministic wrap: everything random is given. */
export interface WrapSevTransportKeysInput {
  /** ECDH shared secret Z (48-byte X coordinate on P-384). */
  readonly sharedSecret: Uint8Array;
  readonly nonce: Uint8Array;
  readonly wrapIv: Uint8Array;
  readonly keys: SevTransportKeys;
  /** The 32-bit guest policy bound by POLICY_MAC. */
  readonly policy: number;
}

/**
 * Builds the session blob (SEV API "Key Wrapping"): derive KEK/KIK from Z and NONCE, encrypt TEK ‖ TIK
 * with AES-128-CTR under KEK, MAC the ciphertext with KIK, MAC the policy with TIK.
 */
export function wrapSevTransportKeys(input: WrapSevTransportKeysInput): SevSessionBlob {
  const nonce = fixedParam(input.nonce, SevSessionFieldSize.NONCE, 'nonce');
  const wrapIv = fixedParam(input.wrapIv, SevSessionFieldSize.WRAP_IV, 'wrapIv');
  const tek = fixedParam(input.keys.tek, SEV_TRANSPORT_KEY_SIZE, 'tek');
  const tik = fixedParam(input.keys.tik, SEV_TRANSPORT_KEY_SIZE, 'tik');
  const { kek, kik } = deriveSevSessionKeys(input.sharedSecret, nonce);
  const wrapTk = sevAes128Ctr(kek, wrapIv, Buffer.concat([tek, tik]));
  return {
    nonce,
    wrapTk,
    wrapIv,
    wrapMac: sevHmacSha256(kik, wrapTk),
    policyMac: computeSevPolicyMac(tik, input.policy),
  };
}

/**
 * The firmware's side (LAUNCH_START, RECEIVE_START): derive KEK/KIK, check WRAP_MAC, unwrap TEK/TIK and
 * check POLICY_MAC against `policy`. Throws SevBadMacError naming the MAC that failed.
 */
export function unwrapSevTransportKeys(input: {
  readonly sharedSecret: Uint8Array;
  readonly session: SevSessionBlob;
  readonly policy: number;
}): SevTransportKeys {
  const { session } = input;
  const { kek, kik } = deriveSevSessionKeys(input.sharedSecret, session.nonce);
  if (!sevMacEqual(sevHmacSha256(kik, session.wrapTk), session.wrapMac)) throw new SevBadMacError('WRAP_MAC');
  const plain = sevAes128Ctr(kek, session.wrapIv, session.wrapTk);
  const keys = {
    tek: plain.subarray(0, SEV_TRANSPORT_KEY_SIZE),
    tik: plain.subarray(SEV_TRANSPORT_KEY_SIZE),
  };
  if (!sevMacEqual(computeSevPolicyMac(keys.tik, input.policy), session.policyMac)) {
    throw new SevBadMacError('POLICY_MAC');
  }
  return keys;
}
