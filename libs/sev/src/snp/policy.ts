import { SnpInvalidFieldError, SnpReservedFieldError } from './errors.js';

/** Bit positions of the 64-bit SNP guest policy (SNP ABI "Guest Policy", spec 9.3). */
export const SNP_POLICY_BITS = {
  abiMinorShift: 0n,
  abiMajorShift: 8n,
  smt: 16n,
  /** Reserved, must be one. */
  reservedMbo: 17n,
  migrateMa: 18n,
  debug: 19n,
  singleSocket: 20n,
  cxlAllow: 21n,
  memAes256Xts: 22n,
  raplDis: 23n,
  ciphertextHiding: 24n,
  pageSwapDisable: 25n,
} as const;

/** Every bit the ABI defines (all others are reserved and must be zero). */
export const SNP_POLICY_DEFINED_MASK = (1n << 26n) - 1n;

/** Offset of POLICY inside the report and ID block, for error context. */
const POLICY_FIELD = 'POLICY';
const POLICY_OFFSET = 0x008;

/** The SNP guest policy as typed flags (what the guest owner allowed the hypervisor and firmware). */
export interface SnpGuestPolicy {
  /** Minimum ABI (firmware) major version the guest may run on. */
  readonly abiMajor: number;
  readonly abiMinor: number;
  readonly smtAllowed: boolean;
  /** The guest may be associated with a migration agent (MIGRATE_MA). */
  readonly migrateMaAllowed: boolean;
  readonly debugAllowed: boolean;
  readonly singleSocket: boolean;
  readonly cxlAllowed: boolean;
  readonly memAes256Xts: boolean;
  readonly raplDisabled: boolean;
  readonly ciphertextHiding: boolean;
  readonly pageSwapDisabled: boolean;
}

const FLAG_BITS: ReadonlyArray<[keyof SnpGuestPolicy, bigint]> = [
  ['smtAllowed', SNP_POLICY_BITS.smt],
  ['migrateMaAllowed', SNP_POLICY_BITS.migrateMa],
  ['debugAllowed', SNP_POLICY_BITS.debug],
  ['singleSocket', SNP_POLICY_BITS.singleSocket],
  ['cxlAllowed', SNP_POLICY_BITS.cxlAllow],
  ['memAes256Xts', SNP_POLICY_BITS.memAes256Xts],
  ['raplDisabled', SNP_POLICY_BITS.raplDis],
  ['ciphertextHiding', SNP_POLICY_BITS.ciphertextHiding],
  ['pageSwapDisabled', SNP_POLICY_BITS.pageSwapDisable],
];

const bit = (value: bigint, n: bigint): boolean => ((value >> n) & 1n) === 1n;

/**
 * Decodes a 64-bit guest policy. Bit 17 must be one and bits 63:26 zero, as the firmware itself rejects
 * other values at SNP_LAUNCH_START.
 */
export function decodeGuestPolicy(value: bigint): SnpGuestPolicy {
  if (value < 0n || value >= 1n << 64n) {
    throw new SnpInvalidFieldError(POLICY_FIELD, `0x${value.toString(16)}`, 'not a 64-bit value');
  }
  if (!bit(value, SNP_POLICY_BITS.reservedMbo)) {
    throw new SnpReservedFieldError(`${POLICY_FIELD} bit 17`, POLICY_OFFSET, 'must be one');
  }
  if ((value & ~SNP_POLICY_DEFINED_MASK) !== 0n) {
    throw new SnpReservedFieldError(`${POLICY_FIELD} bits 63:26`, POLICY_OFFSET);
  }
  const flags = Object.fromEntries(FLAG_BITS.map(([name, n]) => [name, bit(value, n)]));
  return {
    ...(flags as Omit<SnpGuestPolicy, 'abiMajor' | 'abiMinor'>),
    abiMinor: Number((value >> SNP_POLICY_BITS.abiMinorShift) & 0xffn),
    abiMajor: Number((value >> SNP_POLICY_BITS.abiMajorShift) & 0xffn),
  };
}

/** Encodes a guest policy to its 64-bit value (bit 17 set). */
export function encodeGuestPolicy(policy: SnpGuestPolicy): bigint {
  for (const [name, v] of [
    ['abiMajor', policy.abiMajor],
    ['abiMinor', policy.abiMinor],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) {
      throw new SnpInvalidFieldError(`${POLICY_FIELD}.${name}`, String(v), 'must be 0-255');
    }
  }
  let value = (1n << SNP_POLICY_BITS.reservedMbo) | BigInt(policy.abiMinor) | (BigInt(policy.abiMajor) << 8n);
  for (const [name, n] of FLAG_BITS) if (policy[name] === true) value |= 1n << n;
  return value;
}

/** What a verifier demands of a guest policy; every field is optional, defaults in brackets. */
export interface SnpPolicyRequirements {
  /** Accept DEBUG-allowed guests (their memory can be read by the host) [false]. */
  readonly allowDebug?: boolean;
  /** Accept guests that may be bound to a migration agent [true]. */
  readonly allowMigrateMa?: boolean;
  /** Accept guests that allow SMT [true]. */
  readonly allowSmt?: boolean;
  readonly requireSingleSocket?: boolean;
  readonly requireMemAes256Xts?: boolean;
  readonly requireCiphertextHiding?: boolean;
  /** Lowest acceptable ABI_MAJOR.ABI_MINOR in the policy. */
  readonly minimumAbi?: { readonly major: number; readonly minor: number };
}

/** The requirement violations of `policy`, one readable line each (empty when it complies). */
export function policyViolations(policy: SnpGuestPolicy, req: SnpPolicyRequirements = {}): string[] {
  const out: string[] = [];
  if (policy.debugAllowed && req.allowDebug !== true) out.push('DEBUG is allowed');
  if (policy.migrateMaAllowed && req.allowMigrateMa === false) out.push('MIGRATE_MA is allowed');
  if (policy.smtAllowed && req.allowSmt === false) out.push('SMT is allowed');
  if (!policy.singleSocket && req.requireSingleSocket === true) out.push('SINGLE_SOCKET is not set');
  if (!policy.memAes256Xts && req.requireMemAes256Xts === true) out.push('MEM_AES_256_XTS is not set');
  if (!policy.ciphertextHiding && req.requireCiphertextHiding === true)
    out.push('CIPHERTEXT_HIDING is not set');
  const min = req.minimumAbi;
  if (
    min &&
    (policy.abiMajor < min.major || (policy.abiMajor === min.major && policy.abiMinor < min.minor))
  ) {
    out.push(`ABI ${policy.abiMajor}.${policy.abiMinor} is below ${min.major}.${min.minor}`);
  }
  return out;
}
