import type { X509Certificate } from 'node:crypto';
import {
  encodeAmdCaChain,
  encodeSevCertificate,
  encodeSevctlExport,
  encodeSevPlatformCertChain,
} from '@ccm/sev';
import { certificateChain, type PlatformState } from './platform-store.js';

export { certificateChain };

/**
 * The platform's certificates in the container formats libs/sev and the tools read: the decoded chain,
 * ASK ‖ ARK, `sevctl export --full`, QEMU's `query-sev-capabilities` and the SNP VCEK chain.
 */

/** QEMU `query-sev-capabilities` result (base64 fields as QMP returns them). */
export interface QemuSevCapabilitiesResult {
  readonly pdh: string;
  readonly 'cert-chain': string;
  readonly 'cpu0-id': string;
  readonly cbitpos: number;
  readonly 'reduced-phys-bits': number;
}

/** C-bit position and physical-address bits lost to it, as EPYC parts report them. */
const CBITPOS = 51;
const REDUCED_PHYS_BITS = 1;

/** ASK ‖ ARK (AMD's `ask_ark_<product>.cert` layout; QEMU's `sev-amd-cert`). */
export function amdCertChain(state: PlatformState): Buffer {
  return encodeAmdCaChain({ ask: state.ask, ark: state.ark });
}

/** PEK ‖ OCA ‖ CEK (PDH_CERT_EXPORT's CERTS buffer; QEMU's `cert-chain` / `sev-plat-cert`). */
export function platformCertChain(state: PlatformState): Buffer {
  return encodeSevPlatformCertChain(certificateChain(state));
}

/** `sevctl export --full`: PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK. */
export function sevctlExport(state: PlatformState): Buffer {
  return encodeSevctlExport(certificateChain(state));
}

/** What QEMU's `query-sev-capabilities` would return on this host. */
export function qemuSevCapabilities(state: PlatformState): QemuSevCapabilitiesResult {
  return {
    pdh: encodeSevCertificate(state.identity.pdh.cert).toString('base64'),
    'cert-chain': platformCertChain(state).toString('base64'),
    'cpu0-id': state.chipId.toString('base64'),
    cbitpos: CBITPOS,
    'reduced-phys-bits': REDUCED_PHYS_BITS,
  };
}

/** The SNP chain ARK → ASK → VCEK (libs/sev's `SnpCertChain` shape). */
export function snpCertChain(state: PlatformState): {
  readonly ark: X509Certificate;
  readonly ask: X509Certificate;
  readonly vek: X509Certificate;
} {
  return { ark: state.arkX509, ask: state.askX509, vek: state.vcek.cert };
}
