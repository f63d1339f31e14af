import { decodeSevPacketHeader, SEV_PACKET_HEADER_SIZE, type SevPacketHeader } from '@ccm/sev';
import { asFirmware, ensure, SevFirmwareError, SevFirmwareLengthError } from '../errors.js';
import type { SevCommandName } from '../status.js';

/**
 * The packet inputs shared by LAUNCH_SECRET and RECEIVE_UPDATE_DATA/VMSA (the HDR and TRANS buffers of
 * the command), and the replay rule they share.
 */

/** A packet for guest memory: header (52 bytes or decoded), ciphertext and where it goes. */
export interface GuestPacketInput {
  readonly header: Uint8Array | SevPacketHeader;
  readonly data: Uint8Array;
  readonly gpa: number;
}

/** A 52-byte packet header or a decoded one; reserved FLAGS bits are INVALID_PARAM, COMPRESSED UNSUPPORTED. */
export function headerInput(command: SevCommandName, header: Uint8Array | SevPacketHeader): SevPacketHeader {
  let decoded = header as SevPacketHeader;
  if (header instanceof Uint8Array) {
    if (header.length !== SEV_PACKET_HEADER_SIZE) {
      throw new SevFirmwareLengthError(command, 'packet header', SEV_PACKET_HEADER_SIZE, header.length);
    }
    decoded = asFirmware(command, () => decodeSevPacketHeader(header), 'INVALID_PARAM');
  }
  ensure(decoded.flags === 0, 'UNSUPPORTED', command, 'compressed packets are not supported');
  return decoded;
}

/**
 * Replay rule: an IV is accepted at most once per set (one set per receive session, one per launch for
 * LAUNCH_SECRET). Called after the MAC verified, so a forged packet cannot burn a genuine IV. A second
 * delivery is BAD_MEASUREMENT with reason `replayed-iv`.
 */
export function acceptIvOnce(seen: Set<string>, iv: Uint8Array, command: SevCommandName): void {
  const key = Buffer.from(iv.buffer, iv.byteOffset, iv.byteLength).toString('latin1');
  if (seen.has(key)) {
    throw new SevFirmwareError('BAD_MEASUREMENT', command, 'packet IV was already accepted (replay)', {
      reason: 'replayed-iv',
    });
  }
  seen.add(key);
}
