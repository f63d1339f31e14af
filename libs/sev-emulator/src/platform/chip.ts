import { createECDH, createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { encodeTcbVersion, sevKdf, type SnpGeneration, type TcbVersion } from '@ccm/sev';

/**
 * The emulated chip's fused secret and the keys the firmware derives from it. On real parts the CEK and
 * the VCEK are derived inside the AMD-SP from a per-chip secret (the VCEK also from the TCB), so they
 * survive every reset and the VCEK changes when the TCB does; the emulator does the same with the SEV
 * KDF and the labels sev-tool names, so the only chip state on disk is the secret itself.
 */

/** Size of the fused chip secret. */
export const CHIP_SECRET_SIZE = 48;
/** Size of CHIP_ID (GET_ID, report CHIP_ID). */
export const CHIP_ID_SIZE = 64;

/** Order of the P-384 group. */
const P384_ORDER = BigInt(
  '0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973',
);

/** A P-384 private key from a scalar in [1, n-1]. */
function p384FromScalar(d: bigint): { privateKey: KeyObject; publicKey: KeyObject } {
  const scalar = Buffer.from(d.toString(16).padStart(96, '0'), 'hex');
  const ecdh = createECDH('secp384r1');
  ecdh.setPrivateKey(scalar);
  const point = ecdh.getPublicKey(); // 0x04 ‖ X ‖ Y
  const jwk = {
    kty: 'EC',
    crv: 'P-384',
    d: scalar.toString('base64url'),
    x: point.subarray(1, 49).toString('base64url'),
    y: point.subarray(49).toString('base64url'),
  };
  const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

/** A P-384 key derived from the chip secret: 64 KDF bytes reduced into [1, n-1] (bias < 2^-128). */
function deriveP384(secret: Uint8Array, label: string, context: Uint8Array) {
  const wide = BigInt(`0x${sevKdf(secret, label, context, 64).toString('hex')}`);
  return p384FromScalar((wide % (P384_ORDER - 1n)) + 1n);
}

/** The chip endorsement key (ECDSA P-384): fixed for the life of the chip. */
export function deriveCek(secret: Uint8Array) {
  return deriveP384(secret, 'sev-chip-endorsement-key', new Uint8Array(0));
}

/** The versioned chip endorsement key for one TCB (SNP): a new TCB gives a new VCEK. */
export function deriveVcek(secret: Uint8Array, tcb: TcbVersion) {
  return deriveP384(secret, 'sev-versioned-chip-endorsement-key', encodeTcbVersion(tcb));
}

/** Size of the key that seals exported guest contexts (AES-256-GCM). */
export const CONTEXT_KEY_SIZE = 32;

/**
 * The key that seals guest contexts the firmware hands out for safekeeping (`exportGuest`): derived from
 * the fused secret like the CEK, so it survives every reset, never exists off the chip, and a context
 * sealed by one chip opens on no other.
 */
export function deriveContextKey(secret: Uint8Array): Buffer {
  return sevKdf(secret, 'ccm-guest-context-sealing-key', new Uint8Array(0), CONTEXT_KEY_SIZE);
}

/**
 * CHIP_ID as GET_ID and SNP reports show it: 64 bytes, of which Turin-class parts use only the first 8
 * (the rest zero, which is how verifiers tell a Turin v2 report apart).
 */
export function deriveChipId(secret: Uint8Array, generation: SnpGeneration): Buffer {
  const id = createHash('sha512').update('ccm-emulated-chip-id').update(secret).digest();
  if (generation === 'turin') id.fill(0, 8);
  return id;
}
