import type { SevGeneration } from './sev/generation.js';
import { snpProductName, type SnpGeneration } from './snp/generation.js';
import type { TcbVersion } from './snp/tcb.js';

/**
 * AMD Key Distribution Service (KDS) addresses of the certificates a verifier needs and cannot get from
 * the platform itself: the VCEK of a chip at a TCB, the product line's CA chains and CRL, and a SEV
 * chip's CEK. Pure: this builds the URL, production code fetches it (CCM's broker has no network and
 * reads a cache the owner fills from these addresses).
 */

/** The public KDS endpoint. */
export const AMD_KDS_BASE_URL = 'https://kdsintf.amd.com';

/** Which key family a chain or CRL is for: VCEK (per chip) or VLEK (per cloud provider). */
export type KdsKeyFamily = 'vcek' | 'vlek';

/** Lowercase hex of `bytes` (a chip id). */
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

/** Thrown for a chip id or TCB that cannot name a KDS certificate. */
export class KdsRequestError extends Error {
  override readonly name = 'KdsRequestError';
  readonly code = 'KDS_REQUEST_INVALID';
}

function chipIdFor(generation: SnpGeneration, chipId: Uint8Array): string {
  if (chipId.length !== 64) throw new KdsRequestError(`CHIP_ID must be 64 bytes, got ${chipId.length}`);
  if (chipId.every((b) => b === 0)) {
    throw new KdsRequestError('CHIP_ID is zero (MASK_CHIP_ID or a VLEK-signed report): no VCEK to fetch');
  }
  // Turin's KDS names a chip by the first 8 bytes of its id (the rest is zero).
  return generation === 'turin' ? hex(chipId.subarray(0, 8)) : hex(chipId);
}

/** The SPL parameters of `tcb` as the KDS names them (`fmcSPL` first for Turin). */
function splParams(generation: SnpGeneration, tcb: TcbVersion, what: string): URLSearchParams {
  const q = new URLSearchParams();
  if (generation === 'turin') {
    if (tcb.fmc === undefined) throw new KdsRequestError(`a Turin ${what} needs the FMC SPL of the TCB`);
    q.set('fmcSPL', String(tcb.fmc));
  }
  q.set('blSPL', String(tcb.bootLoader));
  q.set('teeSPL', String(tcb.tee));
  q.set('snpSPL', String(tcb.snp));
  q.set('ucodeSPL', String(tcb.microcode));
  return q;
}

/**
 * The URL of the VCEK of chip `chipId` at `tcb` (the report's REPORTED_TCB): `/vcek/v1/<product>/<hwid>`
 * with the SPL query parameters the KDS expects (`fmcSPL` for Turin). The answer is DER.
 */
export function kdsVcekUrl(
  generation: SnpGeneration,
  chipId: Uint8Array,
  tcb: TcbVersion,
  base: string = AMD_KDS_BASE_URL,
): string {
  const q = splParams(generation, tcb, 'VCEK');
  return `${base}/vcek/v1/${snpProductName(generation)}/${chipIdFor(generation, chipId)}?${q.toString()}`;
}

/**
 * Where a VLEK is filed: a VLEK has no public KDS address of its own (AMD gives it, wrapped, to the
 * cloud provider, who loads it into its platforms), so it is named by the KDS address of what verifies
 * it, its product line's VLEK chain `/vlek/v1/<product>/cert_chain` (ASVK then ARK), with a fragment
 * naming its TCB (the report's REPORTED_TCB) and, when given, the cloud provider (`cspId`, the VLEK's
 * cspID extension). Fetching the URL (a fragment is never sent) gets that chain. Without `cspId` it is
 * the prefix every VLEK of that product line and TCB is filed under.
 */
export function kdsVlekUrl(
  generation: SnpGeneration,
  tcb: TcbVersion,
  cspId?: string,
  base: string = AMD_KDS_BASE_URL,
): string {
  const q = splParams(generation, tcb, 'VLEK');
  return `${kdsCertChainUrl(generation, 'vlek', base)}#${q.toString()}&cspId=${cspId === undefined ? '' : encodeURIComponent(cspId)}`;
}

/** The product line's ASK (or ASVK for VLEK) and ARK, PEM: `/<family>/v1/<product>/cert_chain`. */
export function kdsCertChainUrl(
  generation: SnpGeneration,
  family: KdsKeyFamily = 'vcek',
  base: string = AMD_KDS_BASE_URL,
): string {
  return `${base}/${family}/v1/${snpProductName(generation)}/cert_chain`;
}

/** The product line's certificate revocation list: `/<family>/v1/<product>/crl`. */
export function kdsCrlUrl(
  generation: SnpGeneration,
  family: KdsKeyFamily = 'vcek',
  base: string = AMD_KDS_BASE_URL,
): string {
  return `${base}/${family}/v1/${snpProductName(generation)}/crl`;
}

/** The CEK of a SEV chip by its GET_ID value (64 bytes, or 128 for two-socket ids): `/cek/id/<hex>`. */
export function kdsCekUrl(chipId: Uint8Array, base: string = AMD_KDS_BASE_URL): string {
  if (chipId.length !== 64 && chipId.length !== 128) {
    throw new KdsRequestError(`a SEV GET_ID value is 64 bytes, got ${chipId.length}`);
  }
  return `${base}/cek/id/${hex(chipId)}`;
}

/** AMD's legacy-format ASK ‖ ARK of a SEV product line (what `sevctl` and QEMU's `sev-amd-cert` take). */
export function amdAskArkUrl(generation: SevGeneration): string {
  return `https://developer.amd.com/wp-content/resources/ask_ark_${generation}.cert`;
}
