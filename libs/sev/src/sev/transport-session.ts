import type { KeyObject } from 'node:crypto';
import { SevInvalidStateError } from './errors.js';
import { openSevTransportSession } from './key-agreement.js';
import { startSevSend, type StartSevSendInput } from './migration.js';
import {
  openSevPacket,
  SEV_PACKET_IV_SIZE,
  sealSevPacket,
  SevPacketContext,
  type SevPacket,
  type SevPacketHeader,
} from './packet.js';
import type { SevCertificate } from './sev-cert.js';
import type { SevSessionBlob, SevTransportKeys } from './session.js';
import { defaultSevRandom, type SevRandomSource } from './transport-crypto.js';

/**
 * Typed SEND_* / RECEIVE_* sequences for an emulated firmware: `SevSendSession.start` (SEND_START) →
 * `sealUpdate` per page (SEND_UPDATE_DATA/VMSA) → `finish` (SEND_FINISH); `SevReceiveSession.start`
 * (RECEIVE_START) → `openUpdate` → `finish`. After `finish` no packet may be sealed or opened.
 */

/** Marker returned by `finish`: the sequence is over and offers no further step. */
export interface SevTransportFinished {
  readonly packets: number;
}

abstract class TransportSession {
  #packets = 0;
  #finished = false;

  protected constructor(protected readonly keys: SevTransportKeys) {}

  /** Runs one packet step; only packets that succeed are counted. */
  protected step<T>(fn: () => T): T {
    if (this.#finished) throw new SevInvalidStateError('transport session already finished');
    const result = fn();
    this.#packets++;
    return result;
  }

  /** SEND_FINISH / RECEIVE_FINISH. */
  finish(): SevTransportFinished {
    if (this.#finished) throw new SevInvalidStateError('transport session already finished');
    this.#finished = true;
    return { packets: this.#packets };
  }
}

/** The source side after SEND_START. */
export class SevSendSession extends TransportSession {
  private constructor(
    keys: SevTransportKeys,
    /** Session blob for the target's RECEIVE_START. */
    readonly session: SevSessionBlob,
    readonly policy: number,
    private readonly random: SevRandomSource,
  ) {
    super(keys);
  }

  /** SEND_START: verifies the target chain and policy, then wraps fresh keys (see `startSevSend`). */
  static start(input: StartSevSendInput): SevSendSession {
    const started = startSevSend(input);
    return new SevSendSession(started.keys, started.session, input.policy, input.random ?? defaultSevRandom);
  }

  /** SEND_UPDATE_DATA / SEND_UPDATE_VMSA: one packet with a fresh IV. */
  sealUpdate(plaintext: Uint8Array): SevPacket {
    return this.step(() => {
      const iv = this.random(SEV_PACKET_IV_SIZE);
      return sealSevPacket({ context: SevPacketContext.TRANSPORT, keys: this.keys, iv, plaintext });
    });
  }
}

/** The target side after RECEIVE_START. */
export class SevReceiveSession extends TransportSession {
  private constructor(
    keys: SevTransportKeys,
    readonly policy: number,
  ) {
    super(keys);
  }

  /** RECEIVE_START: ECDH with the source PDH, check WRAP_MAC and POLICY_MAC (SevBadMacError). */
  static start(input: {
    readonly targetPdhPrivateKey: KeyObject;
    readonly sourcePdh: SevCertificate;
    readonly session: SevSessionBlob;
    readonly policy: number;
  }): SevReceiveSession {
    const keys = openSevTransportSession({
      privateKey: input.targetPdhPrivateKey,
      peer: input.sourcePdh,
      session: input.session,
      policy: input.policy,
    });
    return new SevReceiveSession(keys, input.policy);
  }

  /** RECEIVE_UPDATE_DATA / _VMSA: verify the packet MAC and decrypt. */
  openUpdate(header: SevPacketHeader, ciphertext: Uint8Array): Buffer {
    return this.step(() =>
      openSevPacket({ context: SevPacketContext.TRANSPORT, keys: this.keys, header, ciphertext }),
    );
  }
}
