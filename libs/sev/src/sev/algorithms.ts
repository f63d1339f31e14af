import {
  SevAlgorithm,
  type SevAlgorithmCode,
  SevCurve,
  type SevCurveId,
  SevUsage,
  type SevUsageCode,
} from './constants.js';
import { SevUnknownAlgorithmError, SevUnknownCurveError, SevUnknownUsageError } from './errors.js';

/** What an algorithm code does with its key. */
export type SevAlgorithmKind = 'none' | 'rsa' | 'ecdsa' | 'ecdh';
/** Node digest names used by the SEV formats. */
export type SevHashName = 'sha256' | 'sha384';

const USAGE_NAMES = new Map<number, string>(Object.entries(SevUsage).map(([k, v]) => [v, k]));
const ALGORITHM_NAMES = new Map<number, string>(Object.entries(SevAlgorithm).map(([k, v]) => [v, k]));

/** Checks that `value` is a usage code from the SEV API table; throws SevUnknownUsageError otherwise. */
export function parseSevUsage(value: number, field: string): SevUsageCode {
  if (!USAGE_NAMES.has(value)) throw new SevUnknownUsageError(field, value);
  return value as SevUsageCode;
}

/** Checks that `value` is an algorithm code from the SEV API table. */
export function parseSevAlgorithm(value: number, field: string): SevAlgorithmCode {
  if (!ALGORITHM_NAMES.has(value)) throw new SevUnknownAlgorithmError(field, value);
  return value as SevAlgorithmCode;
}

/** Checks that `value` is a curve id (1 = P-256, 2 = P-384). */
export function parseSevCurve(value: number): SevCurveId {
  if (value !== SevCurve.P256 && value !== SevCurve.P384) throw new SevUnknownCurveError(value);
  return value;
}

/** Spec name of a usage code, e.g. `PEK` for 0x1002 (hex for unknown codes). */
export function sevUsageName(code: number): string {
  return USAGE_NAMES.get(code) ?? `0x${code.toString(16)}`;
}

/** Spec name of an algorithm code, e.g. `ECDSA_SHA256`. */
export function sevAlgorithmName(code: number): string {
  return ALGORITHM_NAMES.get(code) ?? `0x${code.toString(16)}`;
}

/** Key kind of an algorithm code. */
export function sevAlgorithmKind(code: SevAlgorithmCode): SevAlgorithmKind {
  switch (code) {
    case SevAlgorithm.NONE:
      return 'none';
    case SevAlgorithm.RSA_SHA256:
    case SevAlgorithm.RSA_SHA384:
      return 'rsa';
    case SevAlgorithm.ECDSA_SHA256:
    case SevAlgorithm.ECDSA_SHA384:
      return 'ecdsa';
    case SevAlgorithm.ECDH_SHA256:
    case SevAlgorithm.ECDH_SHA384:
      return 'ecdh';
  }
}

/** Hash named by an algorithm code (`*_SHA256` → sha256, `*_SHA384` → sha384). */
export function sevAlgorithmHash(code: SevAlgorithmCode, field = 'algorithm'): SevHashName {
  if (code === SevAlgorithm.NONE) throw new SevUnknownAlgorithmError(field, code, 'no hash for');
  return code & 0x100 ? 'sha384' : 'sha256';
}

/** Byte length of a digest, which is also the RSA-PSS salt length AMD uses. */
export function hashLength(hash: SevHashName): number {
  return hash === 'sha256' ? 32 : 48;
}

/** Byte length of a coordinate on the curve. */
export function curveByteLength(curve: SevCurveId): number {
  return curve === SevCurve.P256 ? 32 : 48;
}

/** The RSA algorithm code an AMD key of `modulusBits` signs with (2048 → SHA-256, else SHA-384). */
export function rsaAlgorithmForBits(modulusBits: number): SevAlgorithmCode {
  return modulusBits <= 2048 ? SevAlgorithm.RSA_SHA256 : SevAlgorithm.RSA_SHA384;
}
