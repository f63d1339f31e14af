import { fixedParam, readU32, requireExactLength, u32le } from './bytes.js';
import { SevBadMacError, SevReservedBytesError } from './errors.js';
import { SEV_TRANSPORT_KEY_SIZE } from './kdf.js';
import type { SevTransportKeys } from './session.js';
import { sevAes128Ctr, sevHmacSha256, sevMacEqual } from './transport-crypto.js';

/** Size of the packet header of LAUNCH_SECRET and SEND/RECEIVE_UPDATE_DATA/VMSA. */
export const SEV_PACKET_HEADER_SIZE = 52;
/** Field offsets inside the packet header. */
export const SevPacketHeaderOffset = { FLAGS: 0x00, IV: 0x04, MAC: 0x14 } as const;
/** Size of the packet IV. */
export const SEV_PACKET_IV_SIZE = 16;
/** Size of the packet MAC. */
export const SEV_PACKET_MAC_SIZE = 32;
/** FLAGS bits; all others are reserved. */
export const SevPacketFlag = { COMPRESSED: 1 << 0 } as const;

/**
 * Context byte that starts the MAC input and keeps MACs of different commands apart.
 * LAUNCH_SECRET's 0x01 is confirmed by the sevctl known answers; TRANSPORT (SEND/RECEIVE_UPDATE_DATA and
 * _VMSA) is **our own choice, unconfirmed** against AMD's spec: real firmware computes those MACs on both
 * ends, so only an emulator uses it, and it only has to be self-consistent.
 */
export const SevPacketContext = { LAUNCH_SECRET: 0x01, TRANSPORT: 0x02 } as const;

/** The decoded 52-byte packet header. */
export interface SevPacketHeader {
  readonly flags: number;
  readonly iv: Uint8Array;
  readonly mac: Uint8Array;
}

/** Decodes exactly 52 bytes; FLAGS bits other than COMPRESSED must be zero. */
export function decodeSevPacketHeader(bytes: Uint8Array): SevPacketHeader {
  requireExactLength(bytes, SEV_PACKET_HEADER_SIZE, 'packet header');
  const flags = readU32(bytes, SevPacketHeaderOffset.FLAGS);
  if (flags & ~SevPacketFlag.COMPRESSED)
    throw new SevReservedBytesError('packet FLAGS', SevPacketHeaderOffset.FLAGS);
  return {
    flags,
    iv: Uint8Array.from(bytes.subarray(SevPacketHeaderOffset.IV, SevPacketHeaderOffset.MAC)),
    mac: Uint8Array.from(bytes.subarray(SevPacketHeaderOffset.MAC)),
  };
}

/** Encodes FLAGS ‖ IV ‖ MAC (52 bytes). */
export function encodeSevPacketHeader(header: SevPacketHeader): Buffer {
  return Buffer.concat([
    u32le(header.flags),
    fixedParam(header.iv, SEV_PACKET_IV_SIZE, 'iv'),
    fixedParam(header.mac, SEV_PACKET_MAC_SIZE, 'mac'),
  ]);
}

/** What the MAC binds besides the ciphertext. */
export interface SevPacketBinding {
  /** SevPacketContext value. */
  readonly context: number;
  /** LAUNCH_SECRET: the 32-byte MEASURE (omitted for API < 0.17). */
  readonly binding?: Uint8Array;
  /** GUEST_LENGTH of the command; defaults to the ciphertext length, as every tool sends. */
  readonly guestLength?: number;
}

/**
 * MAC = HMAC-SHA256(TIK, context ‖ LE32(FLAGS) ‖ IV ‖ LE32(GUEST_LENGTH) ‖ LE32(TRANS_LENGTH) ‖
 * ciphertext ‖ binding).
 */
export function computeSevPacketMac(
  tik: Uint8Array,
  flags: number,
  iv: Uint8Array,
  ciphertext: Uint8Array,
  bind: SevPacketBinding,
): Buffer {
  return sevHmacSha256(
    fixedParam(tik, SEV_TRANSPORT_KEY_SIZE, 'tik'),
    Buffer.of(bind.context),
    u32le(flags),
    fixedParam(iv, SEV_PACKET_IV_SIZE, 'iv'),
    u32le(bind.guestLength ?? ciphertext.length),
    u32le(ciphertext.length),
    ciphertext,
    bind.binding ?? Buffer.alloc(0),
  );
}

/** A sealed packet: header and ciphertext (QEMU/KVM pass them as two buffers). */
export interface SevPacket {
  readonly header: SevPacketHeader;
  readonly ciphertext: Buffer;
}

/** Encrypts with AES-128-CTR(TEK, IV) and MACs with TIK: LAUNCH_SECRET, SEND_UPDATE_DATA and the like. */
export function sealSevPacket(
  input: SevPacketBinding & { keys: SevTransportKeys; iv: Uint8Array; plaintext: Uint8Array; flags?: number },
): SevPacket {
  const flags = input.flags ?? 0;
  const iv = fixedParam(input.iv, SEV_PACKET_IV_SIZE, 'iv');
  const ciphertext = sevAes128Ctr(
    fixedParam(input.keys.tek, SEV_TRANSPORT_KEY_SIZE, 'tek'),
    iv,
    input.plaintext,
  );
  return {
    header: { flags, iv, mac: computeSevPacketMac(input.keys.tik, flags, iv, ciphertext, input) },
    ciphertext,
  };
}

/**
 * The receiving firmware's side: checks the MAC (SevBadMacError 'PACKET_MAC') before decrypting, then
 * returns the plaintext. Usable for LAUNCH_SECRET and RECEIVE_UPDATE_DATA alike.
 */
export function openSevPacket(
  input: SevPacketBinding & { keys: SevTransportKeys; header: SevPacketHeader; ciphertext: Uint8Array },
): Buffer {
  const { header } = input;
  const mac = computeSevPacketMac(input.keys.tik, header.flags, header.iv, input.ciphertext, input);
  if (!sevMacEqual(mac, header.mac)) throw new SevBadMacError('PACKET_MAC');
  return sevAes128Ctr(fixedParam(input.keys.tek, SEV_TRANSPORT_KEY_SIZE, 'tek'), header.iv, input.ciphertext);
}
