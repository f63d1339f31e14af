import { encodeAmdCertificate, readAmdCertificate, type AmdSigningKeyCertificate } from './amd-cert.js';
import type { AmdCaCertificates, SevPlatformCertificates } from './chain.js';
import { SEV_CERT_SIZE, SevUsage } from './constants.js';
import { SevInvalidLengthError, SevInvalidParamError } from './errors.js';
import {
  decodeSevCertificate,
  decodeSevCertificates,
  encodeSevCertificate,
  requireSevUsage,
  type SevCertificate,
} from './sev-cert.js';

/**
 * Container formats that carry SEV chains: PDH_CERT_EXPORT's PEK ‖ OCA ‖ CEK buffer, AMD's
 * `ask_ark_<product>.cert`, `sevctl export [--full]` and QEMU's `query-sev-capabilities`.
 */

/** PEK, OCA and CEK: the CERTS buffer of PDH_CERT_EXPORT (QEMU's `cert-chain`, `sev-plat-cert`). */
export type SevPlatformCertChain = Omit<SevPlatformCertificates, 'pdh'>;

/** Size of PDH_CERT_EXPORT's CERTS buffer (three certificates). */
export const SEV_PLATFORM_CERT_CHAIN_SIZE = 3 * SEV_CERT_SIZE;

/** Decodes PEK ‖ OCA ‖ CEK (6252 bytes), checking each certificate's usage. */
export function decodeSevPlatformCertChain(bytes: Uint8Array): SevPlatformCertChain {
  if (bytes.length !== SEV_PLATFORM_CERT_CHAIN_SIZE) {
    throw new SevInvalidLengthError('PEK ‖ OCA ‖ CEK chain', SEV_PLATFORM_CERT_CHAIN_SIZE, bytes.length);
  }
  const [pek, oca, cek] = decodeSevCertificates(bytes, 'PEK ‖ OCA ‖ CEK chain');
  requireSevUsage(pek, SevUsage.PEK, 'chain[0] (PEK)');
  requireSevUsage(oca, SevUsage.OCA, 'chain[1] (OCA)');
  requireSevUsage(cek, SevUsage.CEK, 'chain[2] (CEK)');
  return { pek, oca, cek };
}

/** Encodes PEK ‖ OCA ‖ CEK. */
export function encodeSevPlatformCertChain(chain: SevPlatformCertChain): Buffer {
  return Buffer.concat([chain.pek, chain.oca, chain.cek].map(encodeSevCertificate));
}

/** Decodes ASK ‖ ARK (AMD's `ask_ark_<product>.cert`, QEMU's `sev-amd-cert`). */
export function decodeAmdCaChain(bytes: Uint8Array): AmdCaCertificates {
  const first = readAmdCertificate(bytes, 0);
  const second = readAmdCertificate(bytes, first.size);
  const total = first.size + second.size;
  if (bytes.length !== total) throw new SevInvalidLengthError('ASK ‖ ARK chain', total, bytes.length);
  const ask: AmdSigningKeyCertificate = first.certificate;
  const ark: AmdSigningKeyCertificate = second.certificate;
  if (ask.usage !== SevUsage.ASK || ark.usage !== SevUsage.ARK) {
    throw new SevInvalidParamError('ASK ‖ ARK chain', 'expected the ASK first, then the ARK');
  }
  return { ask, ark };
}

/** Encodes ASK ‖ ARK. */
export function encodeAmdCaChain(chain: AmdCaCertificates): Buffer {
  return Buffer.concat([encodeAmdCertificate(chain.ask), encodeAmdCertificate(chain.ark)]);
}

/** What `sevctl export` writes: PDH ‖ PEK ‖ OCA ‖ CEK, and with `--full` also ASK ‖ ARK. */
export type SevctlExport = SevPlatformCertificates & Partial<AmdCaCertificates>;

/** Decodes a `sevctl export` file (8336 bytes, or more with `--full`). */
export function decodeSevctlExport(bytes: Uint8Array): SevctlExport {
  const platformSize = SEV_CERT_SIZE + SEV_PLATFORM_CERT_CHAIN_SIZE;
  if (bytes.length < platformSize) {
    throw new SevInvalidLengthError('sevctl export', `at least ${platformSize}`, bytes.length);
  }
  const pdh = decodeSevCertificate(bytes.subarray(0, SEV_CERT_SIZE));
  requireSevUsage(pdh, SevUsage.PDH, 'sevctl export PDH');
  const platform = decodeSevPlatformCertChain(bytes.subarray(SEV_CERT_SIZE, platformSize));
  if (bytes.length === platformSize) return { pdh, ...platform };
  return { pdh, ...platform, ...decodeAmdCaChain(bytes.subarray(platformSize)) };
}

/** Encodes a `sevctl export` file (`--full` layout when ASK and ARK are given). */
export function encodeSevctlExport(chain: SevctlExport): Buffer {
  const parts = [encodeSevCertificate(chain.pdh), encodeSevPlatformCertChain(chain)];
  if (chain.ask && chain.ark) parts.push(encodeAmdCaChain({ ask: chain.ask, ark: chain.ark }));
  return Buffer.concat(parts);
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Strict base64 decode (QEMU and QMP use the standard alphabet with padding). */
export function decodeSevBase64(value: unknown, param: string): Buffer {
  if (typeof value !== 'string') throw new SevInvalidParamError(param, 'expected a base64 string');
  const compact = value.replace(/\s+/g, '');
  if (!BASE64.test(compact) || compact.length % 4 !== 0) throw new SevInvalidParamError(param, 'not base64');
  return Buffer.from(compact, 'base64');
}

/** QEMU `query-sev-capabilities` decoded: the platform certificates and the CPU facts. */
export interface QemuSevCapabilities extends SevPlatformCertificates {
  /** `cpu0-id`: the 64-byte GET_ID value of socket 0 (QEMU 7.1+), if present. */
  readonly cpu0Id?: Uint8Array;
  readonly cbitpos?: number;
  readonly reducedPhysBits?: number;
}

/**
 * Decodes QEMU's `query-sev-capabilities` result (`pdh`, `cert-chain`, `cpu0-id`, `cbitpos`,
 * `reduced-phys-bits`), given as JSON text or parsed; a whole QMP reply `{"return": …}` is accepted.
 */
export function decodeQemuSevCapabilities(input: string | object): QemuSevCapabilities {
  let value: unknown = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch {
      throw new SevInvalidParamError('query-sev-capabilities', 'not JSON');
    }
  }
  if (typeof value !== 'object' || value === null) {
    throw new SevInvalidParamError('query-sev-capabilities', 'expected an object');
  }
  let caps = value as Record<string, unknown>;
  if (typeof caps.return === 'object' && caps.return !== null) caps = caps.return as Record<string, unknown>;
  const pdh: SevCertificate = decodeSevCertificate(decodeSevBase64(caps.pdh, 'pdh'));
  requireSevUsage(pdh, SevUsage.PDH, 'query-sev-capabilities pdh');
  const chain = decodeSevPlatformCertChain(decodeSevBase64(caps['cert-chain'], 'cert-chain'));
  const num = (k: string): number | undefined => (typeof caps[k] === 'number' ? caps[k] : undefined);
  return {
    pdh,
    ...chain,
    cpu0Id: caps['cpu0-id'] === undefined ? undefined : decodeSevBase64(caps['cpu0-id'], 'cpu0-id'),
    cbitpos: num('cbitpos'),
    reducedPhysBits: num('reduced-phys-bits'),
  };
}
