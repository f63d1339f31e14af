import {
  computeSevLaunchMeasure,
  decodeSevCertificate,
  decodeSevGuestPolicy,
  decodeSevSession,
  encodeSevMeasurementBlob,
  openSevLaunchSecret,
  openSevTransportSession,
  SEV_CERT_SIZE,
  SEV_MNONCE_SIZE,
  SEV_SESSION_SIZE,
  SEV_VMSA_SIZE,
  SevLaunchDigest,
  SevPolicyBit,
  type SevCertificate,
  type SevSessionBlob,
} from '@ccm/sev';
import { asFirmware, ensure, SevFirmwareLengthError } from '../errors.js';
import type { Firmware, GuestRef } from '../firmware.js';
import type { GuestContext } from '../guest/context.js';
import { acceptIvOnce, type GuestPacketInput, headerInput } from './packets.js';
import { checkGuestPolicy } from './policy-checks.js';
import type { SevCommandName } from '../status.js';

/** LAUNCH_START inputs: what QEMU's `sev-guest` object carries, plus the guest's memory size. */
export interface LaunchStartInput {
  /** The 32-bit guest policy (bound by the session's POLICY_MAC). */
  readonly policy: number;
  /** The guest owner's GODH certificate (2084 bytes, or decoded). */
  readonly godh: Uint8Array | SevCertificate;
  /** The 128-byte session blob (or decoded) wrapping TEK/TIK for this platform's PDH. */
  readonly session: Uint8Array | SevSessionBlob;
  /** Guest RAM in bytes (a multiple of 4 KiB). */
  readonly memoryBytes: number;
  /** HANDLE ≠ 0: share the VEK of this running guest (refused when either policy has NOKS). */
  readonly shareKeyWith?: GuestRef;
}

/** LAUNCH_MEASURE output. */
export interface SevLaunchMeasurement {
  readonly measure: Buffer;
  readonly mnonce: Buffer;
  /** MEASURE ‖ MNONCE: QEMU's `query-sev-launch-measure` data. */
  readonly blob: Buffer;
}

/** A 2084-byte certificate or an already decoded one; INVALID_LENGTH / INVALID_CERTIFICATE otherwise. */
export function certificateInput(
  command: SevCommandName,
  what: string,
  cert: Uint8Array | SevCertificate,
): SevCertificate {
  if (!(cert instanceof Uint8Array)) return cert;
  if (cert.length !== SEV_CERT_SIZE)
    throw new SevFirmwareLengthError(command, what, SEV_CERT_SIZE, cert.length);
  return asFirmware(command, () => decodeSevCertificate(cert));
}

/** A 128-byte session blob or an already decoded one. */
export function sessionInput(command: SevCommandName, session: Uint8Array | SevSessionBlob): SevSessionBlob {
  if (!(session instanceof Uint8Array)) return session;
  if (session.length !== SEV_SESSION_SIZE) {
    throw new SevFirmwareLengthError(command, 'session', SEV_SESSION_SIZE, session.length);
  }
  return decodeSevSession(session);
}

/**
 * LAUNCH_START: checks the policy against the platform, agrees Z between the PDH and the GODH, checks
 * WRAP_MAC (BAD_MEASUREMENT) and POLICY_MAC (POLICY_FAILURE), and creates a context in LUPDATE with a
 * fresh VEK (or the shared one) and an empty GCTX.LD.
 */
export function launchStart(fw: Firmware, input: LaunchStartInput): GuestContext {
  const command = 'LAUNCH_START';
  fw.requirePlatform(command, 'INIT', 'WORKING');
  checkGuestPolicy(fw, command, input.policy);
  const godh = certificateInput(command, 'GODH certificate', input.godh);
  const session = sessionInput(command, input.session);
  const keys = asFirmware(command, () =>
    openSevTransportSession({ privateKey: fw.identity.pdh.key, peer: godh, session, policy: input.policy }),
  );
  let vek;
  if (input.shareKeyWith !== undefined) {
    const other = fw.guest(command, input.shareKeyWith);
    fw.requireKind(other, command, 'sev', 'sev-es');
    const noKs = ((other.policy | input.policy) & SevPolicyBit.NOKS) !== 0;
    ensure(!noKs, 'POLICY_FAILURE', command, 'NOKS: key sharing is forbidden by a policy');
    vek = other.vek;
  }
  const es = decodeSevGuestPolicy(input.policy).encryptedState;
  return fw.addGuest(command, {
    kind: es ? 'sev-es' : 'sev',
    state: 'LUPDATE',
    policy: input.policy,
    memoryBytes: input.memoryBytes,
    vek,
    launchKeys: keys,
    launchDigest: new SevLaunchDigest(),
  });
}

function launching(fw: Firmware, command: SevCommandName, ref: GuestRef): GuestContext {
  const ctx = fw.guest(command, ref);
  fw.requireKind(ctx, command, 'sev', 'sev-es');
  return ctx;
}

/**
 * LAUNCH_UPDATE_DATA: measures the bytes at [gpa, gpa + length) into GCTX.LD, then encrypts them in place
 * (16-byte aligned address and length). The hypervisor wrote them before, through the host view.
 */
export function launchUpdateData(fw: Firmware, ref: GuestRef, gpa: number, length: number): void {
  const command = 'LAUNCH_UPDATE_DATA';
  const ctx = launching(fw, command, ref);
  fw.requireGuestState(ctx, command, 'LUPDATE');
  fw.requireActive(ctx, command);
  fw.requireRange(ctx, command, gpa, length, 16);
  ensure(ctx.vmsas.length === 0, 'INVALID_GUEST_STATE', command, 'guest data after LAUNCH_UPDATE_VMSA');
  const loaded = ctx.memory.encryptInPlace(gpa, length);
  ctx.launchDigest?.updateData(loaded);
}

/** LAUNCH_UPDATE_VMSA (SEV-ES only, POLICY_FAILURE otherwise): measures and keeps one vCPU's 4 KiB VMSA. */
export function launchUpdateVmsa(fw: Firmware, ref: GuestRef, vmsa: Uint8Array): number {
  const command = 'LAUNCH_UPDATE_VMSA';
  const ctx = launching(fw, command, ref);
  fw.requireGuestState(ctx, command, 'LUPDATE');
  ensure(ctx.kind === 'sev-es', 'POLICY_FAILURE', command, 'the guest policy does not have ES');
  fw.requireActive(ctx, command);
  if (vmsa.length !== SEV_VMSA_SIZE)
    throw new SevFirmwareLengthError(command, 'VMSA', SEV_VMSA_SIZE, vmsa.length);
  ctx.launchDigest?.updateVmsa(vmsa);
  ctx.vmsas.push(Buffer.from(vmsa));
  return ctx.vmsas.length - 1;
}

/** LAUNCH_MEASURE: LUPDATE → LSECRET; MEASURE = HMAC(TIK, 0x04 ‖ API ‖ BUILD ‖ POLICY ‖ LD ‖ MNONCE). */
export function launchMeasure(fw: Firmware, ref: GuestRef): SevLaunchMeasurement {
  const command = 'LAUNCH_MEASURE';
  const ctx = launching(fw, command, ref);
  fw.requireGuestState(ctx, command, 'LUPDATE');
  const { apiMajor, apiMinor, build } = fw.config;
  const mnonce = Buffer.from(fw.random(SEV_MNONCE_SIZE));
  const digest = (ctx.launchDigest as SevLaunchDigest).digest();
  const measure = computeSevLaunchMeasure({
    apiMajor,
    apiMinor,
    build,
    tik: (ctx.launchKeys as { tik: Uint8Array }).tik,
    policy: ctx.policy,
    digest,
    mnonce,
  });
  ctx.measurement = { measure, mnonce };
  ctx.state = 'LSECRET';
  return { measure, mnonce, blob: encodeSevMeasurementBlob(ctx.measurement) };
}

/**
 * LAUNCH_SECRET (LSECRET only): verifies the packet MAC, which binds this launch's MEASURE
 * (BAD_MEASUREMENT), refuses an IV already injected (BAD_MEASUREMENT, reason `replayed-iv`), decrypts
 * with TEK and writes the plaintext into private guest memory at `gpa`.
 */
export function launchSecret(fw: Firmware, ref: GuestRef, packet: GuestPacketInput): void {
  const command = 'LAUNCH_SECRET';
  const ctx = launching(fw, command, ref);
  fw.requireGuestState(ctx, command, 'LSECRET');
  fw.requireActive(ctx, command);
  fw.requireRange(ctx, command, packet.gpa, packet.data.length, 16);
  const header = headerInput(command, packet.header);
  const plaintext = asFirmware(command, () =>
    openSevLaunchSecret({
      keys: ctx.launchKeys as NonNullable<GuestContext['launchKeys']>,
      measure: (ctx.measurement as NonNullable<GuestContext['measurement']>).measure,
      header,
      ciphertext: packet.data,
      platform: fw.config,
    }),
  );
  acceptIvOnce(ctx.secretIvs, header.iv, command);
  ctx.memory.writePrivate(packet.gpa, plaintext);
}

/** LAUNCH_FINISH: LSECRET → RUNNING; the launch keys are erased. */
export function launchFinish(fw: Firmware, ref: GuestRef): void {
  const ctx = launching(fw, 'LAUNCH_FINISH', ref);
  fw.requireGuestState(ctx, 'LAUNCH_FINISH', 'LSECRET');
  ctx.launchKeys = undefined;
  ctx.launchDigest = undefined;
  ctx.state = 'RUNNING';
}
