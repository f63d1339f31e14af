import {
  createSevTransportSession,
  encodeSevPacketHeader,
  encodeSevSession,
  openSevPacket,
  openSevTransportSession,
  SEV_PACKET_IV_SIZE,
  SEV_VMSA_SIZE,
  sealSevPacket,
  SevPacketContext,
  type SevCertificate,
  type SevSessionBlob,
} from '@ccm/sev';
import { asFirmware, ensure, SevFirmwareLengthError } from '../errors.js';
import type { Firmware, GuestRef } from '../firmware.js';
import type { GuestContext, TransportState } from '../guest/context.js';
import type { SevCommandName } from '../status.js';
import { certificateInput, sessionInput } from './launch.js';
import { acceptIvOnce, type GuestPacketInput, headerInput } from './packets.js';
import { checkGuestPolicy } from './policy-checks.js';
import { checkSendTarget, type SendStartTarget } from './send-target.js';

/** SEND_START output: the policy and the session blob for the target's RECEIVE_START. */
export interface SevSendStart {
  readonly policy: number;
  readonly session: Buffer;
}

/** One SEND_UPDATE_* packet: the 52-byte header and the ciphertext (QEMU streams both). */
export interface SevTransportPacket {
  readonly header: Buffer;
  readonly data: Buffer;
}

/** RECEIVE_START inputs (what QEMU reads from the migration stream, plus the guest's memory size). */
export interface ReceiveStartInput {
  readonly policy: number;
  /** The source platform's PDH (2084 bytes or decoded). */
  readonly sourcePdh: Uint8Array | SevCertificate;
  readonly session: Uint8Array | SevSessionBlob;
  readonly memoryBytes: number;
}

/**
 * SEND_START (RUNNING → SUPDATE): enforces the policy and the target chain (see `checkSendTarget`),
 * picks fresh TEK/TIK and wraps them for the target PDH with Z from this platform's PDH key.
 */
export function sendStart(fw: Firmware, ref: GuestRef, target: SendStartTarget): SevSendStart {
  const command = 'SEND_START';
  const ctx = fw.guest(command, ref);
  ensure(ctx.kind !== 'snp', 'UNSUPPORTED', command, 'SNP guests migrate through a migration agent');
  fw.requireGuestState(ctx, command, 'RUNNING');
  const pdh = checkSendTarget(fw, ctx, target);
  const { session, keys } = asFirmware(command, () =>
    createSevTransportSession({
      privateKey: fw.identity.pdh.key,
      peer: pdh,
      policy: ctx.policy,
      random: fw.random,
    }),
  );
  ctx.send = { keys, packets: 0, seenIvs: new Set() };
  ctx.state = 'SUPDATE';
  return { policy: ctx.policy, session: encodeSevSession(session) };
}

/** The context and transport state of a guest in SUPDATE or RUPDATE, activated. */
function inTransport(
  fw: Firmware,
  command: SevCommandName,
  ref: GuestRef,
  state: 'SUPDATE' | 'RUPDATE',
): { readonly ctx: GuestContext; readonly transport: TransportState } {
  const ctx = fw.guest(command, ref);
  fw.requireGuestState(ctx, command, state);
  fw.requireActive(ctx, command);
  return { ctx, transport: (state === 'SUPDATE' ? ctx.send : ctx.receive) as TransportState };
}

function seal(fw: Firmware, send: TransportState, plaintext: Uint8Array): SevTransportPacket {
  const iv = fw.random(SEV_PACKET_IV_SIZE);
  const packet = sealSevPacket({ context: SevPacketContext.TRANSPORT, keys: send.keys, iv, plaintext });
  send.packets++;
  return { header: encodeSevPacketHeader(packet.header), data: packet.ciphertext };
}

/** SEND_UPDATE_DATA: the guest plaintext at [gpa, gpa + length) as one encrypted, MACed packet. */
export function sendUpdateData(fw: Firmware, ref: GuestRef, gpa: number, length: number): SevTransportPacket {
  const { ctx, transport } = inTransport(fw, 'SEND_UPDATE_DATA', ref, 'SUPDATE');
  fw.requireRange(ctx, 'SEND_UPDATE_DATA', gpa, length, 16);
  return seal(fw, transport, ctx.memory.readPrivate(gpa, length));
}

/** SEND_UPDATE_VMSA (SEV-ES): one vCPU's VMSA as a packet. */
export function sendUpdateVmsa(fw: Firmware, ref: GuestRef, vcpu: number): SevTransportPacket {
  const { ctx, transport } = inTransport(fw, 'SEND_UPDATE_VMSA', ref, 'SUPDATE');
  const vmsa = ctx.vmsas[vcpu];
  ensure(vmsa !== undefined, 'INVALID_PARAM', 'SEND_UPDATE_VMSA', `guest ${ctx.handle} has no vCPU ${vcpu}`);
  return seal(fw, transport, vmsa);
}

/** SEND_FINISH: SUPDATE → SENT; the source context can now only be decommissioned. */
export function sendFinish(fw: Firmware, ref: GuestRef): { readonly packets: number } {
  return endTransport(fw, 'SEND_FINISH', ref, 'SUPDATE', 'SENT');
}

/** Ends a SEND or RECEIVE: erases the transport keys and moves the guest to `to`. */
function endTransport(
  fw: Firmware,
  command: SevCommandName,
  ref: GuestRef,
  from: 'SUPDATE' | 'RUPDATE',
  to: 'SENT' | 'RUNNING',
): { readonly packets: number } {
  const ctx = fw.guest(command, ref);
  fw.requireGuestState(ctx, command, from);
  const packets = (from === 'SUPDATE' ? ctx.send : ctx.receive)?.packets ?? 0;
  ctx.send = undefined;
  ctx.receive = undefined;
  ctx.state = to;
  return { packets };
}

/** SEND_CANCEL: SUPDATE → RUNNING (the migration was aborted; the source keeps running). */
export function sendCancel(fw: Firmware, ref: GuestRef): void {
  endTransport(fw, 'SEND_CANCEL', ref, 'SUPDATE', 'RUNNING');
}

/**
 * RECEIVE_START: checks the policy against this platform, agrees Z between this PDH and the source PDH,
 * checks WRAP_MAC (BAD_MEASUREMENT: the session was made for another platform's PDH, or altered) and
 * POLICY_MAC (POLICY_FAILURE), and creates a context in RUPDATE with a fresh VEK.
 */
export function receiveStart(fw: Firmware, input: ReceiveStartInput): GuestContext {
  const command = 'RECEIVE_START';
  fw.requirePlatform(command, 'INIT', 'WORKING');
  const policy = checkGuestPolicy(fw, command, input.policy);
  const sourcePdh = certificateInput(command, 'source PDH', input.sourcePdh);
  const session = sessionInput(command, input.session);
  const keys = asFirmware(command, () =>
    openSevTransportSession({
      privateKey: fw.identity.pdh.key,
      peer: sourcePdh,
      session,
      policy: input.policy,
    }),
  );
  return fw.addGuest(command, {
    kind: policy.encryptedState ? 'sev-es' : 'sev',
    state: 'RUPDATE',
    policy: input.policy,
    memoryBytes: input.memoryBytes,
    receive: { keys, packets: 0, seenIvs: new Set() },
  });
}

/**
 * Opens one transport packet: the MAC first (an altered packet is BAD_MEASUREMENT, reason `packet-mac`,
 * and does not burn its IV), then the replay rule (`acceptIvOnce`: once per receive session).
 */
function open(
  command: SevCommandName,
  receive: TransportState,
  packet: Omit<GuestPacketInput, 'gpa'>,
): Buffer {
  const h = headerInput(command, packet.header);
  const data = packet.data;
  const plaintext = asFirmware(command, () =>
    openSevPacket({ context: SevPacketContext.TRANSPORT, keys: receive.keys, header: h, ciphertext: data }),
  );
  acceptIvOnce(receive.seenIvs, h.iv, command);
  receive.packets++;
  return plaintext;
}

/** RECEIVE_UPDATE_DATA: verifies, decrypts and writes one packet into private memory at `gpa`. */
export function receiveUpdateData(fw: Firmware, ref: GuestRef, packet: GuestPacketInput): void {
  const command = 'RECEIVE_UPDATE_DATA';
  const { ctx, transport } = inTransport(fw, command, ref, 'RUPDATE');
  fw.requireRange(ctx, command, packet.gpa, packet.data.length, 16);
  ctx.memory.writePrivate(packet.gpa, open(command, transport, packet));
}

/** RECEIVE_UPDATE_VMSA (SEV-ES): restores one vCPU's VMSA. */
export function receiveUpdateVmsa(
  fw: Firmware,
  ref: GuestRef,
  packet: Omit<GuestPacketInput, 'gpa'> & { readonly vcpu: number },
): void {
  const command = 'RECEIVE_UPDATE_VMSA';
  const { ctx, transport } = inTransport(fw, command, ref, 'RUPDATE');
  ensure(ctx.kind === 'sev-es', 'POLICY_FAILURE', command, 'the guest policy does not have ES');
  if (packet.data.length !== SEV_VMSA_SIZE) {
    throw new SevFirmwareLengthError(command, 'VMSA', SEV_VMSA_SIZE, packet.data.length);
  }
  ensure(Number.isInteger(packet.vcpu) && packet.vcpu >= 0, 'INVALID_PARAM', command, 'bad vCPU index');
  ctx.vmsas[packet.vcpu] = open(command, transport, packet);
}

/** RECEIVE_FINISH: RUPDATE → RUNNING. */
export function receiveFinish(fw: Firmware, ref: GuestRef): { readonly packets: number } {
  return endTransport(fw, 'RECEIVE_FINISH', ref, 'RUPDATE', 'RUNNING');
}
