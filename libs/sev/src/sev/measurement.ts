import { createHash, type Hash } from 'node:crypto';
import { fixedParam, requireExactLength, toHex, u32le } from './bytes.js';
import { SevBadMeasurementError, SevFirmwareImageError, SevInvalidStateError } from './errors.js';
import {
  buildSevKernelHashesTable,
  SEV_HASH_TABLE_PADDED_SIZE,
  type SevKernelHashesInput,
} from './hashes-table.js';
import { findOvmfSevInfo } from './ovmf.js';
import { sevHmacSha256, sevMacEqual } from './transport-crypto.js';
import { SEV_TRANSPORT_KEY_SIZE } from './kdf.js';

/** Size of one VMSA page given to LAUNCH_UPDATE_VMSA. */
export const SEV_VMSA_SIZE = 4096;
/** Size of GCTX.LD (SHA-256). */
export const SEV_LAUNCH_DIGEST_SIZE = 32;
/** Context byte that starts the MEASURE HMAC input (firmware API ≥ 0.17). */
export const SEV_MEASURE_CONTEXT = 0x04;
/** LAUNCH_MEASURE output: MEASURE (32) ‖ MNONCE (16). */
export const SEV_MEASUREMENT_BLOB_SIZE = 48;
/** Size of MEASURE (HMAC-SHA256). */
export const SEV_MEASURE_SIZE = 32;
/** Size of MNONCE, the firmware's random nonce. */
export const SEV_MNONCE_SIZE = 16;

/**
 * GCTX.LD as the firmware keeps it: one SHA-256 over the plaintext of every LAUNCH_UPDATE_DATA, in call
 * order, then (SEV-ES) every LAUNCH_UPDATE_VMSA page. Data after a VMSA, or anything after `digest()`, is
 * an INVALID_GUEST_STATE error, as on the firmware.
 */
export class SevLaunchDigest {
  readonly #hash: Hash = createHash('sha256');
  #vmsaCount = 0;
  #result?: Buffer;

  /** LAUNCH_UPDATE_DATA: measure guest plaintext. */
  updateData(bytes: Uint8Array): this {
    if (this.#vmsaCount > 0) throw new SevInvalidStateError('LAUNCH_UPDATE_DATA after LAUNCH_UPDATE_VMSA');
    this.#live().update(bytes);
    return this;
  }

  /** LAUNCH_UPDATE_VMSA: measure one 4096-byte VMSA page. */
  updateVmsa(page: Uint8Array): this {
    requireExactLength(page, SEV_VMSA_SIZE, 'VMSA page');
    this.#live().update(page);
    this.#vmsaCount++;
    return this;
  }

  /** Number of VMSA pages measured so far. */
  get vmsaCount(): number {
    return this.#vmsaCount;
  }

  /** The 32-byte digest; measuring more afterwards is refused. */
  digest(): Buffer {
    this.#result ??= this.#hash.digest();
    return Buffer.from(this.#result);
  }

  #live(): Hash {
    if (this.#result) throw new SevInvalidStateError('launch digest already finalised (LAUNCH_MEASURE done)');
    return this.#hash;
  }
}

/** The VMSA pages QEMU gives an SEV-ES guest of `vcpus` vCPUs: the BSP page, then one AP page per other vCPU. */
export function sevEsVmsaPages(bsp: Uint8Array, ap: Uint8Array, vcpus: number): Uint8Array[] {
  if (!Number.isInteger(vcpus) || vcpus < 1)
    throw new SevInvalidStateError(`vcpus must be ≥ 1, got ${vcpus}`);
  return [bsp, ...Array.from({ length: vcpus - 1 }, () => ap)];
}

/** What a QEMU/OVMF SEV or SEV-ES launch measures. */
export interface SevLaunchImage {
  /** The OVMF image (the whole flash QEMU maps, measured as one LAUNCH_UPDATE_DATA). */
  readonly firmware: Uint8Array;
  /** Measured direct boot: needs an OVMF whose footer table has a non-empty hashes-table area. */
  readonly kernel?: SevKernelHashesInput;
  /** SEV-ES only: VMSA pages in vCPU order (see `sevEsVmsaPages`). */
  readonly vmsas?: readonly Uint8Array[];
}

/** Expected GCTX.LD for a QEMU/OVMF launch: SHA-256(OVMF ‖ [hashes table] ‖ [VMSAs]). */
export function computeSevLaunchDigest(image: SevLaunchImage): Buffer {
  const ld = new SevLaunchDigest().updateData(image.firmware);
  if (image.kernel) {
    const area = findOvmfSevInfo(image.firmware).hashesTable;
    if (!area || area.base === 0 || area.size < SEV_HASH_TABLE_PADDED_SIZE) {
      throw new SevFirmwareImageError(
        'no SEV hashes-table area: this OVMF cannot measure -kernel/-initrd/-append',
      );
    }
    ld.updateData(buildSevKernelHashesTable(image.kernel));
  }
  for (const page of image.vmsas ?? []) ld.updateVmsa(page);
  return ld.digest();
}

/** Firmware version as PLATFORM_STATUS / QEMU `query-sev` report it. */
export interface SevPlatformVersion {
  readonly apiMajor: number;
  readonly apiMinor: number;
  readonly build: number;
}

/** Inputs of the MEASURE HMAC. */
export interface SevMeasureInput extends SevPlatformVersion {
  readonly tik: Uint8Array;
  readonly policy: number;
  /** GCTX.LD (32 bytes). */
  readonly digest: Uint8Array;
  readonly mnonce: Uint8Array;
}

/** True when the firmware API predates the 0x04/version prefix of MEASURE (API < 0.17). */
export function isSevLegacyMeasureApi(v: Pick<SevPlatformVersion, 'apiMajor' | 'apiMinor'>): boolean {
  return v.apiMajor === 0 && v.apiMinor < 17;
}

/**
 * MEASURE = HMAC-SHA256(TIK, 0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ LE32(POLICY) ‖ LD ‖ MNONCE); for API
 * < 0.17 the first four bytes are omitted.
 */
export function computeSevLaunchMeasure(input: SevMeasureInput): Buffer {
  const tik = fixedParam(input.tik, SEV_TRANSPORT_KEY_SIZE, 'tik');
  const ld = fixedParam(input.digest, SEV_LAUNCH_DIGEST_SIZE, 'digest');
  const mnonce = fixedParam(input.mnonce, SEV_MNONCE_SIZE, 'mnonce');
  const prefix = isSevLegacyMeasureApi(input)
    ? Buffer.alloc(0)
    : Buffer.of(SEV_MEASURE_CONTEXT, input.apiMajor, input.apiMinor, input.build);
  return sevHmacSha256(tik, prefix, u32le(input.policy), ld, mnonce);
}

/** The 48-byte LAUNCH_MEASURE blob (QEMU `query-sev-launch-measure` `data`, base64). */
export interface SevMeasurementBlob {
  readonly measure: Uint8Array;
  readonly mnonce: Uint8Array;
}

/** Splits the 48-byte LAUNCH_MEASURE blob (exact length). */
export function decodeSevMeasurementBlob(bytes: Uint8Array): SevMeasurementBlob {
  requireExactLength(bytes, SEV_MEASUREMENT_BLOB_SIZE, 'LAUNCH_MEASURE blob');
  return {
    measure: Uint8Array.from(bytes.subarray(0, SEV_MEASURE_SIZE)),
    mnonce: Uint8Array.from(bytes.subarray(SEV_MEASURE_SIZE)),
  };
}

/** Joins MEASURE ‖ MNONCE into the 48-byte blob. */
export function encodeSevMeasurementBlob(blob: SevMeasurementBlob): Buffer {
  return Buffer.concat([
    fixedParam(blob.measure, SEV_MEASURE_SIZE, 'measure'),
    fixedParam(blob.mnonce, SEV_MNONCE_SIZE, 'mnonce'),
  ]);
}

/** Verdict of a measurement check. */
export interface SevMeasurementVerdict {
  readonly ok: boolean;
  readonly expected: Buffer;
  readonly actual: Uint8Array;
  readonly mnonce: Uint8Array;
}

/**
 * Recomputes MEASURE from the expected digest with the blob's MNONCE and compares (constant time).
 * A match proves the platform unwrapped TIK (holds the PDH key) and loaded exactly the expected image.
 */
export function verifySevLaunchMeasurement(
  blob: SevMeasurementBlob | Uint8Array,
  expected: Omit<SevMeasureInput, 'mnonce'>,
): SevMeasurementVerdict {
  const decoded = blob instanceof Uint8Array ? decodeSevMeasurementBlob(blob) : blob;
  const want = computeSevLaunchMeasure({ ...expected, mnonce: decoded.mnonce });
  return {
    ok: sevMacEqual(want, decoded.measure),
    expected: want,
    actual: decoded.measure,
    mnonce: decoded.mnonce,
  };
}

/** Throwing form of `verifySevLaunchMeasurement` (SevBadMeasurementError). */
export function assertSevLaunchMeasurement(
  blob: SevMeasurementBlob | Uint8Array,
  expected: Omit<SevMeasureInput, 'mnonce'>,
): SevMeasurementBlob {
  const verdict = verifySevLaunchMeasurement(blob, expected);
  if (!verdict.ok) throw new SevBadMeasurementError(toHex(verdict.expected), toHex(verdict.actual));
  return { measure: verdict.actual, mnonce: verdict.mnonce };
}
