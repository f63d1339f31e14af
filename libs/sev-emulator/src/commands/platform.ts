import {
  decodeSevCertificate,
  encodeSevCertificate,
  encodeSevPlatformCertChain,
  requireSevUsage,
  SEV_CERT_SIZE,
  type SevCertificate,
  sevSignerOf,
  SevUsage,
  signSevCertificate,
  verifySevCertificateSignature,
} from '@ccm/sev';
import { asFirmware, ensure, SevFirmwareLengthError } from '../errors.js';
import type { Firmware } from '../firmware.js';
import {
  generatePdh,
  generateSelfOwnedIdentity,
  isCurrentPek,
  pekSigningRequest,
  signerOf,
} from '../platform/identity.js';
import type { SevCommandName, SevPlatformStateName } from '../status.js';
import { SEV_PLATFORM_STATE } from '../status.js';

/** PLATFORM_STATUS, decoded; `bytes` is the 12-byte command buffer (spec §4.4). */
export interface SevPlatformStatus {
  readonly apiMajor: number;
  readonly apiMinor: number;
  readonly build: number;
  readonly state: SevPlatformStateName;
  /** OWNER bit 0: the PEK is certified by an external OCA. */
  readonly owner: 'self' | 'external';
  /** CONFIG bit 0: INIT ran with SEV-ES enabled. */
  readonly esInitialized: boolean;
  /** SNP_INIT ran (not part of the legacy status buffer). */
  readonly snpInitialized: boolean;
  readonly guestCount: number;
  readonly bytes: Buffer;
}

/** PDH_CERT_EXPORT output: the PDH and PEK ‖ OCA ‖ CEK (QEMU's `pdh` and `cert-chain`). */
export interface SevPdhCertExport {
  readonly pdh: Buffer;
  readonly certChain: Buffer;
}

/** INIT: UNINIT → INIT; `es` sets CONFIG.ES (SEV-ES guests need it). */
export function init(fw: Firmware, options: { readonly es?: boolean } = {}): void {
  fw.requirePlatform('INIT', 'UNINIT');
  fw.esInitialized = options.es ?? true;
  fw.platformState = 'INIT';
}

/** SHUTDOWN: any state → UNINIT; every guest context is destroyed with its memory. */
export function shutdown(fw: Firmware): void {
  for (const handle of [...fw.guests.keys()]) fw.removeGuest(handle);
  fw.asidOwner.clear();
  fw.asidsToFlush.clear();
  fw.platformState = 'UNINIT';
  fw.esInitialized = false;
  fw.snpInitialized = false;
}

/** PLATFORM_RESET (UNINIT only): deletes the persistent owner state; a new self-owned OCA, PEK and PDH. */
export function platformReset(fw: Firmware): void {
  fw.requirePlatform('PLATFORM_RESET', 'UNINIT');
  fw.replaceIdentity(generateSelfOwnedIdentity(fw.store.cek.key, fw.config));
}

/** PLATFORM_STATUS: allowed in every state. */
export function platformStatus(fw: Firmware): SevPlatformStatus {
  const { apiMajor, apiMinor, build } = fw.config;
  const owner = fw.identity.owner;
  const bytes = Buffer.alloc(12);
  bytes[0] = apiMajor;
  bytes[1] = apiMinor;
  bytes[2] = SEV_PLATFORM_STATE[fw.platformState];
  bytes[3] = owner === 'external' ? 1 : 0;
  bytes.writeUInt16LE(fw.esInitialized ? 1 : 0, 4);
  bytes[7] = build;
  bytes.writeUInt32LE(fw.guests.size, 8);
  return {
    apiMajor,
    apiMinor,
    build,
    state: fw.platformState,
    owner,
    esInitialized: fw.esInitialized,
    snpInitialized: fw.snpInitialized,
    guestCount: fw.guests.size,
    bytes,
  };
}

/** PEK_GEN (INIT only): new self-signed OCA, PEK (signed by OCA and CEK) and PDH; ownership reverts to self. */
export function pekGen(fw: Firmware): void {
  fw.requirePlatform('PEK_GEN', 'INIT');
  fw.replaceIdentity(generateSelfOwnedIdentity(fw.store.cek.key, fw.config));
}

/** PDH_GEN (INIT or WORKING): a new PDH signed by the current PEK. Running guests keep their keys. */
export function pdhGen(fw: Firmware): void {
  fw.requirePlatform('PDH_GEN', 'INIT', 'WORKING');
  fw.replaceIdentity({ ...fw.identity, pdh: generatePdh(fw.identity.pek, fw.config) });
}

/** PEK_CSR (INIT only): the current PEK as an unsigned certificate, for an external OCA to sign. */
export function pekCsr(fw: Firmware): Buffer {
  fw.requirePlatform('PEK_CSR', 'INIT');
  return encodeSevCertificate(pekSigningRequest(fw.identity));
}

function decodeCert(command: SevCommandName, what: string, bytes: Uint8Array): SevCertificate {
  if (bytes.length !== SEV_CERT_SIZE)
    throw new SevFirmwareLengthError(command, what, SEV_CERT_SIZE, bytes.length);
  return asFirmware(command, () => decodeSevCertificate(bytes));
}

/**
 * PEK_CERT_IMPORT (INIT only): takes ownership. `pek` is the PEK_CSR certificate with an OCA signature
 * in one slot, `oca` the owner's self-signed OCA. The firmware checks the PEK is its own (INVALID_CERTIFICATE),
 * the OCA self-signature and the OCA's signature on the PEK (BAD_SIGNATURE), adds the CEK signature in
 * the other slot and records the external owner (ALREADY_OWNED if there is one: PEK_GEN or
 * PLATFORM_RESET first).
 */
export function pekCertImport(fw: Firmware, pek: Uint8Array, oca: Uint8Array): void {
  const command = 'PEK_CERT_IMPORT';
  fw.requirePlatform(command, 'INIT');
  ensure(fw.identity.owner === 'self', 'ALREADY_OWNED', command, 'the platform is already externally owned');
  const pekCert = decodeCert(command, 'PEK certificate', pek);
  const ocaCert = decodeCert(command, 'OCA certificate', oca);
  asFirmware(command, () => {
    requireSevUsage(pekCert, SevUsage.PEK, 'PEK certificate');
    requireSevUsage(ocaCert, SevUsage.OCA, 'OCA certificate');
  });
  ensure(isCurrentPek(fw.identity, pekCert), 'INVALID_CERTIFICATE', command, 'not this platform’s PEK');
  asFirmware(command, () => {
    verifySevCertificateSignature(ocaCert, sevSignerOf(ocaCert));
    verifySevCertificateSignature(pekCert, sevSignerOf(ocaCert));
  });
  const ocaSlot = pekCert.signatures.findIndex((s) => s.usage === SevUsage.OCA);
  const cekSlot = ocaSlot === 0 ? 1 : 0;
  const signed = signSevCertificate(pekCert, cekSlot, signerOf(SevUsage.CEK, fw.store.cek.key));
  fw.replaceIdentity({
    owner: 'external',
    oca: { cert: ocaCert },
    pek: { cert: signed, key: fw.identity.pek.key },
    pdh: fw.identity.pdh,
  });
}

/** PDH_CERT_EXPORT (INIT or WORKING): PDH and PEK ‖ OCA ‖ CEK; the CEK is the lab-endorsed one. */
export function pdhCertExport(fw: Firmware): SevPdhCertExport {
  fw.requirePlatform('PDH_CERT_EXPORT', 'INIT', 'WORKING');
  const { pdh, pek, oca } = fw.identity;
  return {
    pdh: encodeSevCertificate(pdh.cert),
    certChain: encodeSevPlatformCertChain({ pek: pek.cert, oca: oca.cert, cek: fw.store.cek.cert }),
  };
}

/** GET_ID: the 64-byte chip id (KDS looks up the CEK by it). Allowed in every state. */
export function getId(fw: Firmware): Buffer {
  return Buffer.from(fw.store.chipId);
}

/** The host's WBINVD on every core: lets a following DF_FLUSH succeed. */
export function wbinvd(fw: Firmware): void {
  fw.cachesDirty = false;
}

/** DF_FLUSH (INIT or WORKING): makes deactivated ASIDs reusable; WBINVD_REQUIRED while caches are dirty. */
export function dfFlush(fw: Firmware): void {
  fw.requirePlatform('DF_FLUSH', 'INIT', 'WORKING');
  ensure(!fw.cachesDirty, 'WBINVD_REQUIRED', 'DF_FLUSH', 'WBINVD on all cores first');
  fw.asidsToFlush.clear();
}

/** SNP_INIT (UNINIT only, before INIT): enables SNP guests. */
export function snpInit(fw: Firmware): void {
  fw.requirePlatform('SNP_INIT', 'UNINIT');
  ensure(!fw.snpInitialized, 'INVALID_PLATFORM_STATE', 'SNP_INIT', 'SNP is already initialised');
  fw.snpInitialized = true;
}
