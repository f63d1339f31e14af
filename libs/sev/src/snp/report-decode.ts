import { copyRange, isZeroRange, readU32, readU64, requireExactLength, requireLength } from './bytes.js';
import {
  SnpGenerationMismatchError,
  SnpInvalidFieldError,
  SnpReservedFieldError,
  SnpUnknownGenerationError,
  SnpUnsupportedReportVersionError,
} from './errors.js';
import { generationFromCpuid, type SnpGeneration, type TcbLayout, tcbLayoutOf } from './generation.js';
import { decodeGuestPolicy } from './policy.js';
import type {
  SnpAttestationReport,
  SnpCpuid,
  SnpFirmwareVersion,
  SnpKeyInfo,
  SnpPlatformInfo,
} from './report.js';
import {
  P384_SCALAR_SIZE,
  SNP_KEY_INFO,
  SNP_PLATFORM_INFO_BITS,
  SNP_REPORT_FIELDS as F,
  SNP_REPORT_RESERVED_BEFORE_V5,
  SNP_REPORT_RESERVED_COMMON,
  SNP_REPORT_RESERVED_V2,
  SNP_REPORT_SIGNED_SIZE,
  SNP_REPORT_SIZE,
  SNP_REPORT_VERSION_CPUID,
  SNP_REPORT_VERSION_MIT_VECTORS,
  SNP_REPORT_VERSIONS,
  SNP_SIGNATURE_ALGO_ECDSA_P384_SHA384,
  SNP_SIGNING_KEY,
  type SnpReportFieldName,
} from './report-layout.js';
import { decodeTcbVersion } from './tcb.js';

/** Options for {@link parseAttestationReport}. */
export interface ParseReportOptions {
  /**
   * The product line, when the caller knows it (e.g. from the verified ARK). Needed to decode TCB fields
   * of v2 reports whose CHIP_ID is masked; for v3+ it must agree with CPUID_FAM_ID/MOD_ID.
   */
  readonly generation?: SnpGeneration;
}

const field = (bytes: Uint8Array, name: SnpReportFieldName): Uint8Array =>
  copyRange(bytes, F[name][0], F[name][1]);

function checkReserved(bytes: Uint8Array, ranges: ReadonlyArray<readonly [string, number, number]>): void {
  for (const [name, offset, size] of ranges) {
    if (!isZeroRange(bytes, offset, size)) throw new SnpReservedFieldError(name, offset);
  }
}

/**
 * Product line and TCB layout of a report. v3+: from CPUID. v2: the caller's hint, else Turin when only
 * the first 8 bytes of CHIP_ID are set (Turin chip ids are 8 bytes), else the shared Milan/Genoa layout.
 */
function resolveGeneration(
  bytes: Uint8Array,
  version: number,
  hint: SnpGeneration | undefined,
): { layout: TcbLayout; generation?: SnpGeneration } {
  if (version >= SNP_REPORT_VERSION_CPUID) {
    const family = bytes[F.CPUID_FAM_ID[0]];
    const model = bytes[F.CPUID_MOD_ID[0]];
    const fromCpuid = generationFromCpuid(family, model);
    if (fromCpuid && hint && fromCpuid !== hint) {
      throw new SnpGenerationMismatchError(hint, fromCpuid, 'report CPUID_FAM_ID/CPUID_MOD_ID');
    }
    const generation = fromCpuid ?? hint;
    if (!generation) {
      throw new SnpUnknownGenerationError(
        `CPUID family 0x${family.toString(16)} model 0x${model.toString(16)}`,
      );
    }
    return { layout: tcbLayoutOf(generation), generation };
  }
  if (hint) return { layout: tcbLayoutOf(hint), generation: hint };
  const [chipOffset] = F.CHIP_ID;
  const turinLike = !isZeroRange(bytes, chipOffset, 8) && isZeroRange(bytes, chipOffset + 8, 56);
  return turinLike ? { layout: 'turin', generation: 'turin' } : { layout: 'milan-genoa' };
}

function decodeKeyInfo(value: number): SnpKeyInfo {
  if ((value & SNP_KEY_INFO.reservedMask) !== 0)
    throw new SnpReservedFieldError('KEY_INFO bits 31:5', F.KEY_INFO[0]);
  const code = (value >> SNP_KEY_INFO.signingKeyShift) & SNP_KEY_INFO.signingKeyMask;
  const signingKey = code === SNP_SIGNING_KEY.VCEK ? 'VCEK' : code === SNP_SIGNING_KEY.VLEK ? 'VLEK' : 'none';
  if (code !== SNP_SIGNING_KEY.NONE && signingKey === 'none') {
    throw new SnpInvalidFieldError(
      'KEY_INFO.SIGNING_KEY',
      String(code),
      'defined values are 0 (VCEK), 1 (VLEK), 7',
    );
  }
  return {
    authorKeyEn: ((value >> SNP_KEY_INFO.authorKeyEnBit) & 1) === 1,
    maskChipKey: ((value >> SNP_KEY_INFO.maskChipKeyBit) & 1) === 1,
    signingKey,
  };
}

function decodePlatformInfo(raw: bigint): SnpPlatformInfo {
  const b = (n: number): boolean => ((raw >> BigInt(n)) & 1n) === 1n;
  const p = SNP_PLATFORM_INFO_BITS;
  return {
    raw,
    smtEnabled: b(p.smtEnabled),
    tsmeEnabled: b(p.tsmeEnabled),
    eccEnabled: b(p.eccEnabled),
    raplDisabled: b(p.raplDisabled),
    ciphertextHidingEnabled: b(p.ciphertextHidingEnabled),
    aliasCheckComplete: b(p.aliasCheckComplete),
    tioEnabled: b(p.tioEnabled),
  };
}

function firmwareVersion(bytes: Uint8Array, build: number): SnpFirmwareVersion {
  return { build: bytes[build], minor: bytes[build + 1], major: bytes[build + 2] };
}

/**
 * Decodes an 1184-byte SNP ATTESTATION_REPORT (versions 2, 3, 4 and 5), checking every reserved range,
 * the policy's reserved bits, and that the signature is an ECDSA P-384 one whose R/S padding is zero.
 * Does not verify the signature (see {@link verifyReportSignature}).
 */
export function parseAttestationReport(
  bytes: Uint8Array,
  options: ParseReportOptions = {},
): SnpAttestationReport {
  requireLength(bytes, F.VERSION[1], 'SNP attestation report');
  const version = readU32(bytes, F.VERSION[0]);
  if (!(SNP_REPORT_VERSIONS as readonly number[]).includes(version))
    throw new SnpUnsupportedReportVersionError(version);
  requireExactLength(bytes, SNP_REPORT_SIZE, 'SNP attestation report');

  const signatureAlgo = readU32(bytes, F.SIGNATURE_ALGO[0]);
  if (signatureAlgo !== SNP_SIGNATURE_ALGO_ECDSA_P384_SHA384) {
    throw new SnpInvalidFieldError(
      'SIGNATURE_ALGO',
      String(signatureAlgo),
      'only 1 (ECDSA P-384/SHA-384) is defined',
    );
  }
  checkReserved(bytes, SNP_REPORT_RESERVED_COMMON);
  if (version < SNP_REPORT_VERSION_CPUID) checkReserved(bytes, SNP_REPORT_RESERVED_V2);
  if (version < SNP_REPORT_VERSION_MIT_VECTORS) checkReserved(bytes, SNP_REPORT_RESERVED_BEFORE_V5);
  for (const name of ['SIGNATURE_R', 'SIGNATURE_S'] as const) {
    const [offset, size] = F[name];
    if (!isZeroRange(bytes, offset + P384_SCALAR_SIZE, size - P384_SCALAR_SIZE)) {
      throw new SnpReservedFieldError(`${name} bytes 48..71`, offset + P384_SCALAR_SIZE);
    }
  }

  const { layout, generation } = resolveGeneration(bytes, version, options.generation);
  const tcb = (name: 'CURRENT_TCB' | 'REPORTED_TCB' | 'COMMITTED_TCB' | 'LAUNCH_TCB') =>
    decodeTcbVersion(field(bytes, name), layout, name);
  const cpuid: SnpCpuid | undefined =
    version >= SNP_REPORT_VERSION_CPUID
      ? {
          family: bytes[F.CPUID_FAM_ID[0]],
          model: bytes[F.CPUID_MOD_ID[0]],
          stepping: bytes[F.CPUID_STEP[0]],
        }
      : undefined;
  const mit = version >= SNP_REPORT_VERSION_MIT_VECTORS;

  return {
    version,
    guestSvn: readU32(bytes, F.GUEST_SVN[0]),
    policy: decodeGuestPolicy(readU64(bytes, F.POLICY[0])),
    familyId: field(bytes, 'FAMILY_ID'),
    imageId: field(bytes, 'IMAGE_ID'),
    vmpl: readU32(bytes, F.VMPL[0]),
    signatureAlgo,
    currentTcb: tcb('CURRENT_TCB'),
    platformInfo: decodePlatformInfo(readU64(bytes, F.PLATFORM_INFO[0])),
    keyInfo: decodeKeyInfo(readU32(bytes, F.KEY_INFO[0])),
    reportData: field(bytes, 'REPORT_DATA'),
    measurement: field(bytes, 'MEASUREMENT'),
    hostData: field(bytes, 'HOST_DATA'),
    idKeyDigest: field(bytes, 'ID_KEY_DIGEST'),
    authorKeyDigest: field(bytes, 'AUTHOR_KEY_DIGEST'),
    reportId: field(bytes, 'REPORT_ID'),
    reportIdMa: field(bytes, 'REPORT_ID_MA'),
    reportedTcb: tcb('REPORTED_TCB'),
    ...(cpuid ? { cpuid } : {}),
    chipId: field(bytes, 'CHIP_ID'),
    committedTcb: tcb('COMMITTED_TCB'),
    currentVersion: firmwareVersion(bytes, F.CURRENT_BUILD[0]),
    committedVersion: firmwareVersion(bytes, F.COMMITTED_BUILD[0]),
    launchTcb: tcb('LAUNCH_TCB'),
    ...(mit
      ? {
          launchMitVector: readU64(bytes, F.LAUNCH_MIT_VECTOR[0]),
          currentMitVector: readU64(bytes, F.CURRENT_MIT_VECTOR[0]),
        }
      : {}),
    signature: { r: field(bytes, 'SIGNATURE_R'), s: field(bytes, 'SIGNATURE_S') },
    tcbLayout: layout,
    ...(generation ? { generation } : {}),
  };
}

/**
 * The bytes the report signature covers, `report[0, 0x2A0)`, as a view (no copy). Throws
 * {@link SnpTruncatedInputError} for anything but a full 1184-byte report.
 */
export function reportSignedBytes(bytes: Uint8Array): Uint8Array {
  requireExactLength(bytes, SNP_REPORT_SIZE, 'SNP attestation report');
  return bytes.subarray(0, SNP_REPORT_SIGNED_SIZE);
}
