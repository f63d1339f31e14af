import { SevInvalidParamError, SevReservedBytesError } from './errors.js';

/** Bits of the 32-bit SEV / SEV-ES guest policy (SEV API §3 "Guest Policy"). */
export const SevPolicyBit = {
  /** Debugging (DBG_DECRYPT/DBG_ENCRYPT) is refused. */
  NODBG: 1 << 0,
  /** The guest may not share its key with other guests. */
  NOKS: 1 << 1,
  /** SEV-ES is required. */
  ES: 1 << 2,
  /** SEND_START is refused: no migration at all. */
  NOSEND: 1 << 3,
  /** May only be sent to a platform in the same domain (same OCA). */
  DOMAIN: 1 << 4,
  /** May only be sent to an AMD-certified SEV platform. */
  SEV: 1 << 5,
} as const;

/** Bits 6–15 are reserved and must be zero. */
export const SEV_POLICY_RESERVED_MASK = 0x0000ffc0;
/** Bit position of API_MAJOR (bits 16–23). */
export const SEV_POLICY_API_MAJOR_SHIFT = 16;
/** Bit position of API_MINOR (bits 24–31). */
export const SEV_POLICY_API_MINOR_SHIFT = 24;
/** QEMU's default policy: NODBG only. */
export const SEV_DEFAULT_POLICY = SevPolicyBit.NODBG;

/** The guest policy as a typed value. */
export interface SevGuestPolicy {
  readonly noDebug: boolean;
  readonly noKeySharing: boolean;
  /** ES: SEV-ES required (LAUNCH_UPDATE_VMSA measured). */
  readonly encryptedState: boolean;
  readonly noSend: boolean;
  readonly domain: boolean;
  readonly sev: boolean;
  /** Minimum firmware API major on any platform that runs the guest. */
  readonly apiMajor: number;
  /** Minimum firmware API minor. */
  readonly apiMinor: number;
}

const FLAGS = [
  ['noDebug', SevPolicyBit.NODBG],
  ['noKeySharing', SevPolicyBit.NOKS],
  ['encryptedState', SevPolicyBit.ES],
  ['noSend', SevPolicyBit.NOSEND],
  ['domain', SevPolicyBit.DOMAIN],
  ['sev', SevPolicyBit.SEV],
] as const;

/** Decodes a 32-bit policy; reserved bits 6–15 set is a SevReservedBytesError. */
export function decodeSevGuestPolicy(value: number): SevGuestPolicy {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new SevInvalidParamError('policy', `${value} is not a 32-bit unsigned integer`);
  }
  const reserved = value & SEV_POLICY_RESERVED_MASK;
  if (reserved !== 0) throw new SevReservedBytesError('guest policy', 31 - Math.clz32(reserved));
  const flags = Object.fromEntries(FLAGS.map(([name, bit]) => [name, (value & bit) !== 0])) as Record<
    (typeof FLAGS)[number][0],
    boolean
  >;
  return {
    ...flags,
    apiMajor: (value >>> SEV_POLICY_API_MAJOR_SHIFT) & 0xff,
    apiMinor: (value >>> SEV_POLICY_API_MINOR_SHIFT) & 0xff,
  };
}

/** Encodes a policy to its 32-bit value; missing flags are false, a missing API version is 0.0. */
export function encodeSevGuestPolicy(policy: Partial<SevGuestPolicy>): number {
  let value = 0;
  for (const [name, bit] of FLAGS) if (policy[name]) value |= bit;
  const byte = (v: number | undefined, name: string): number => {
    const n = v ?? 0;
    if (!Number.isInteger(n) || n < 0 || n > 0xff) throw new SevInvalidParamError(name, 'must be 0..255');
    return n;
  };
  value |= byte(policy.apiMajor, 'apiMajor') << SEV_POLICY_API_MAJOR_SHIFT;
  value |= byte(policy.apiMinor, 'apiMinor') << SEV_POLICY_API_MINOR_SHIFT;
  return value >>> 0;
}

/** A policy given either as its 32-bit value or typed; returns the checked 32-bit value. */
export function sevPolicyValue(policy: number | Partial<SevGuestPolicy>): number {
  if (typeof policy === 'number') {
    decodeSevGuestPolicy(policy);
    return policy >>> 0;
  }
  return encodeSevGuestPolicy(policy);
}
