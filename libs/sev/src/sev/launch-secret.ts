import { SevInvalidParamError } from './errors.js';
import { isSevLegacyMeasureApi, SEV_MEASURE_SIZE, type SevPlatformVersion } from './measurement.js';
import {
  encodeSevPacketHeader,
  openSevPacket,
  SEV_PACKET_IV_SIZE,
  sealSevPacket,
  SevPacketContext,
  type SevPacket,
  type SevPacketHeader,
} from './packet.js';
import type { SevTransportKeys } from './session.js';
import { defaultSevRandom, type SevRandomSource } from './transport-crypto.js';

/** Arguments of QEMU's `sev-inject-launch-secret` QMP command (`gpa` is optional there). */
export interface QemuLaunchSecretArguments {
  readonly 'packet-header': string;
  readonly secret: string;
  readonly gpa?: number;
}

/** A LAUNCH_SECRET packet, with the QMP arguments that deliver it. */
export interface SevLaunchSecretPacket extends SevPacket {
  readonly qmp: QemuLaunchSecretArguments;
}

/** Inputs of `sealSevLaunchSecret`. */
export interface SealSevLaunchSecretInput {
  readonly keys: SevTransportKeys;
  /** MEASURE from LAUNCH_MEASURE (the first 32 bytes of the blob): binds the secret to this launch. */
  readonly measure: Uint8Array;
  /** Usually a `buildSevSecretTable` result (already padded to 16). */
  readonly plaintext: Uint8Array;
  /** Random when omitted. */
  readonly iv?: Uint8Array;
  readonly random?: SevRandomSource;
  /** Firmware version: for API < 0.17 MEASURE is not part of the MAC. Modern when omitted. */
  readonly platform?: Pick<SevPlatformVersion, 'apiMajor' | 'apiMinor'>;
  /** Guest-physical address for the QMP command; OVMF's secret area is used by QEMU when omitted. */
  readonly gpa?: number;
}

function bindingFor(measure: Uint8Array, platform?: Pick<SevPlatformVersion, 'apiMajor' | 'apiMinor'>) {
  if (measure.length !== SEV_MEASURE_SIZE) throw new SevInvalidParamError('measure', 'must be 32 bytes');
  return platform && isSevLegacyMeasureApi(platform) ? undefined : measure;
}

/** Builds the LAUNCH_SECRET packet: 52-byte header and AES-128-CTR ciphertext, MAC bound to MEASURE. */
export function sealSevLaunchSecret(input: SealSevLaunchSecretInput): SevLaunchSecretPacket {
  const iv = input.iv ?? (input.random ?? defaultSevRandom)(SEV_PACKET_IV_SIZE);
  const packet = sealSevPacket({
    context: SevPacketContext.LAUNCH_SECRET,
    binding: bindingFor(input.measure, input.platform),
    keys: input.keys,
    iv,
    plaintext: input.plaintext,
  });
  const qmp: QemuLaunchSecretArguments = {
    'packet-header': encodeSevPacketHeader(packet.header).toString('base64'),
    secret: packet.ciphertext.toString('base64'),
    ...(input.gpa === undefined ? {} : { gpa: input.gpa }),
  };
  return { ...packet, qmp };
}

/** Firmware side of LAUNCH_SECRET: verify the MAC against this launch's MEASURE, then decrypt. */
export function openSevLaunchSecret(input: {
  readonly keys: SevTransportKeys;
  readonly measure: Uint8Array;
  readonly header: SevPacketHeader;
  readonly ciphertext: Uint8Array;
  readonly platform?: Pick<SevPlatformVersion, 'apiMajor' | 'apiMinor'>;
}): Buffer {
  return openSevPacket({
    context: SevPacketContext.LAUNCH_SECRET,
    binding: bindingFor(input.measure, input.platform),
    keys: input.keys,
    header: input.header,
    ciphertext: input.ciphertext,
  });
}
